// Another team's Node service calling Keel, as tests/integration/test_typescript_client.py
// runs it: the generated stubs (src/gen) over Connect's gRPC transport against the live
// registry and inference services. Prints what it saw as one JSON document on stdout.
//
//   node clients/typescript/dist/test/interop.js REGISTRY INFERENCE MODEL ROWS_JSON
//
// REGISTRY and INFERENCE are host:port; ROWS_JSON is a list of FP32 feature rows.
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { InferenceService } from "../src/gen/keel/inference/v1/inference_pb.js";
import {
  GRPCInferenceService,
  type ModelInferResponse,
} from "../src/gen/keel/oip/v2/open_inference_pb.js";
import { RegistryService } from "../src/gen/keel/registry/v1/registry_pb.js";

/** Every call gets a deadline: the transport's default, in milliseconds. */
const DEADLINE_MS = 10_000;

function grpcTransport(address: string): Transport {
  return createGrpcTransport({ baseUrl: `http://${address}`, defaultTimeoutMs: DEADLINE_MS });
}

/** Rows as one OIP raw tensor: row-major FP32, little-endian. */
function fp32Bytes(rows: number[][]): Uint8Array {
  const values = rows.flat();
  const view = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((value, i) => view.setFloat32(i * 4, value, true));
  return new Uint8Array(view.buffer);
}

/** One raw output tensor, decoded by its datatype and reshaped to [rows, columns]. */
function rawOutput(reply: ModelInferResponse, name: string): number[][] {
  const index = reply.outputs.findIndex((output) => output.name === name);
  if (index < 0) throw new Error(`output '${name}' missing from the reply`);
  const tensor = reply.outputs[index];
  const bytes = reply.rawOutputContents[index];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flat: number[] = [];
  for (let offset = 0; offset < bytes.byteLength; ) {
    if (tensor.datatype === "FP32") {
      flat.push(view.getFloat32(offset, true));
      offset += 4;
    } else if (tensor.datatype === "INT64") {
      flat.push(Number(view.getBigInt64(offset, true)));
      offset += 8;
    } else {
      throw new Error(`output '${name}': unexpected datatype ${tensor.datatype}`);
    }
  }
  const columns = tensor.shape.length > 1 ? Number(tensor.shape[1]) : 1;
  const rows: number[][] = [];
  for (let start = 0; start < flat.length; start += columns) {
    rows.push(flat.slice(start, start + columns));
  }
  return rows;
}

/** The status a call ends with; the program fails if the call succeeds. */
async function failure(call: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await call;
  } catch (error) {
    const connect = ConnectError.from(error);
    return { code: Code[connect.code], message: connect.rawMessage };
  }
  throw new Error("the call succeeded; expected an error");
}

async function main(registryAddress: string, inferenceAddress: string, model: string, rowsJson: string) {
  const rows = JSON.parse(rowsJson) as number[][];
  const registry = createClient(RegistryService, grpcTransport(registryAddress));
  const transport = grpcTransport(inferenceAddress);
  const oip = createClient(GRPCInferenceService, transport);
  const keel = createClient(InferenceService, transport);

  const listed = await registry.listModels({ pageSize: 10 });
  const { model: found } = await registry.getModel({ name: `models/${model}` });
  const { alias } = await registry.getAlias({ name: `models/${model}/aliases/production` });

  const ready = await oip.serverReady({});
  const metadata = await oip.modelMetadata({ name: model });
  const reply = await oip.modelInfer({
    modelName: model,
    id: "ts-1",
    inputs: [{ name: "features", datatype: "FP32", shape: [BigInt(rows.length), BigInt(rows[0].length)] }],
    rawInputContents: [fp32Bytes(rows)],
  });
  const { servedModel } = await keel.getServedModel({ name: model });

  const tensors = (list: { name: string; datatype: string; shape: bigint[] }[]) =>
    list.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape.map(Number) }));
  const seen = {
    registry: {
      models: listed.models.map((m) => m.name),
      model: { name: found?.name, latestVersion: Number(found?.latestVersion) },
      production: Number(alias?.version),
      missing: await failure(registry.getModel({ name: "models/no-such-model" })),
    },
    inference: {
      serverReady: ready.ready,
      metadata: { inputs: tensors(metadata.inputs), outputs: tensors(metadata.outputs) },
      infer: {
        modelName: reply.modelName,
        modelVersion: reply.modelVersion,
        id: reply.id,
        outputs: tensors(reply.outputs),
        label: rawOutput(reply, "label").map((row) => row[0]),
        probabilities: rawOutput(reply, "probabilities"),
      },
      served: (servedModel?.routes ?? []).map((r) => ({
        model: r.modelName,
        version: Number(r.modelVersion),
        alias: r.alias,
      })),
      unknownModel: await failure(oip.modelMetadata({ name: "no-such-model" })),
    },
  };
  process.stdout.write(`${JSON.stringify(seen)}\n`);
}

const [registryAddress, inferenceAddress, model, rowsJson] = process.argv.slice(2);
if (rowsJson === undefined) {
  process.stderr.write("usage: interop.js REGISTRY INFERENCE MODEL ROWS_JSON\n");
  process.exit(2);
}
main(registryAddress, inferenceAddress, model, rowsJson).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
