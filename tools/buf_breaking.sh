#!/usr/bin/env bash
# buf breaking for Keel's contracts, run by `make lint`.
#
# Against what: with uncommitted changes under protos/, the last commit (HEAD) — so an
# edit in progress is checked; otherwise the commit before it (HEAD~1), i.e. the
# previous commit of main in CI. BUF_BREAKING_AGAINST=<git ref> overrides both.
# Without such a commit (a new repository) the check is skipped, with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=${BUF:-node_modules/.bin/buf}

if [ -n "${BUF_BREAKING_AGAINST:-}" ]; then
  ref=$BUF_BREAKING_AGAINST
elif [ -n "$(git status --porcelain -- protos buf.yaml 2>/dev/null)" ]; then
  ref=HEAD
else
  ref=HEAD~1
fi
if ! git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
  echo "buf breaking: skipped, there is no commit '$ref' to compare with"
  exit 0
fi
if ! git cat-file -e "$ref:buf.yaml" 2>/dev/null; then
  echo "buf breaking: skipped, commit '$ref' has no buf.yaml (no contracts yet)"
  exit 0
fi
echo "buf breaking: protos/ against $ref ($(git rev-parse --short "$ref"))"
"$buf" breaking --against ".git#ref=$(git rev-parse "$ref")"
