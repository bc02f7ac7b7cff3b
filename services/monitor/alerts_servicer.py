"""The alert RPCs of MonitorService: protobuf in, one use-case call, protobuf out.

``AlertRpcs`` is a mixin for the monitor's servicer class, which sets ``self.alerting``:

    class MonitorServicer(AlertRpcs, monitor_pb2_grpc.MonitorServiceServicer):
        def __init__(self, ..., alerting: Alerting) -> None:
            self.alerting = alerting
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from keel.monitor.v1 import monitor_pb2 as pb
from services.common.identity import identity as caller
from services.common.rpc import Context
from services.monitor import alerts_convert as convert
from services.monitor.alert_validation import alert_number, resource_id
from services.monitor.alerts import Alerting


def _rule_id(field: str, name: str) -> str:
    return resource_id(field, name, "alertRules")


class AlertRpcs:
    alerting: Alerting

    async def CreateAlertRule(
        self, request: pb.CreateAlertRuleRequest, context: Context
    ) -> pb.CreateAlertRuleResponse:
        spec = convert.rule_spec(request.alert_rule, request.alert_rule_id)
        created = await self.alerting.rules.create(
            spec, request.alert_rule_id, caller(context), validate_only=request.validate_only
        )
        return pb.CreateAlertRuleResponse(alert_rule=convert.rule_message(created))

    async def GetAlertRule(
        self, request: pb.GetAlertRuleRequest, context: Context
    ) -> pb.GetAlertRuleResponse:
        found = await self.alerting.rules.get(_rule_id("name", request.name))
        return pb.GetAlertRuleResponse(alert_rule=convert.rule_message(found))

    async def ListAlertRules(
        self, request: pb.ListAlertRulesRequest, context: Context
    ) -> pb.ListAlertRulesResponse:
        found, nxt = await self.alerting.rules.list_page(
            resource_id("model", request.model, "models", optional=True),
            resource_id("deployment", request.deployment, "deployments", optional=True),
            request.page_size,
            convert.cursor(request.page_token),
        )
        return pb.ListAlertRulesResponse(
            alert_rules=[convert.rule_message(r) for r in found], next_page_token=convert.token(nxt)
        )

    async def UpdateAlertRule(
        self, request: pb.UpdateAlertRuleRequest, context: Context
    ) -> pb.UpdateAlertRuleResponse:
        rule_id = _rule_id("alert_rule.name", request.alert_rule.name)
        patch = convert.rule_spec(request.alert_rule, rule_id, patch=True)
        paths = list(request.update_mask.paths)
        updated = await self.alerting.rules.update(
            rule_id, patch, paths, request.alert_rule.etag, caller(context)
        )
        return pb.UpdateAlertRuleResponse(alert_rule=convert.rule_message(updated))

    async def DeleteAlertRule(
        self, request: pb.DeleteAlertRuleRequest, context: Context
    ) -> pb.DeleteAlertRuleResponse:
        rule_id = _rule_id("name", request.name)
        await self.alerting.rules.delete(rule_id, request.etag, caller(context))
        return pb.DeleteAlertRuleResponse()

    async def GetAlert(self, request: pb.GetAlertRequest, context: Context) -> pb.GetAlertResponse:
        found = await self.alerting.rules.get_alert(alert_number("name", request.name))
        return pb.GetAlertResponse(alert=convert.alert_message(found))

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: Context
    ) -> pb.ListAlertsResponse:
        found, nxt = await self.alerting.rules.list_alerts(
            convert.alert_filter(request), request.page_size, convert.cursor(request.page_token)
        )
        return pb.ListAlertsResponse(
            alerts=[convert.alert_message(a) for a in found], next_page_token=convert.token(nxt)
        )

    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: Context
    ) -> pb.AcknowledgeAlertResponse:
        number = alert_number("name", request.name)
        acknowledged = await self.alerting.rules.acknowledge(number, request.note, caller(context))
        return pb.AcknowledgeAlertResponse(alert=convert.alert_message(acknowledged))

    async def WatchAlerts(
        self, request: pb.WatchAlertsRequest, context: Context
    ) -> AsyncIterator[pb.WatchAlertsResponse]:
        after = request.after_sequence if request.HasField("after_sequence") else None
        model = resource_id("model", request.model, "models", optional=True)
        severity = convert.min_severity(request.min_severity)
        async for event in self.alerting.watch(after, model, severity):
            yield pb.WatchAlertsResponse(event=convert.event_message(event))
