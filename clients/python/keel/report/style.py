"""The page's stylesheet, inlined in its ``<style>``: system fonts only (nothing to
fetch), the charts' colours as classes (``ref`` and ``cur`` for reference and current)."""

CSS = """
:root { --ref: #6b8fc9; --cur: #f08a4b; --bad: #c8402c; --ok: #2e8b57; --muted: #6b7280; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
  margin: 0 auto; max-width: 1160px; padding: 24px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px;
  border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; } h3 { font-size: 15px; margin: 0 0 6px; }
.sub, .muted { color: var(--muted); } .note { background: #f3f4f6; padding: 8px 12px;
  border-left: 3px solid var(--muted); }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px 3px 0;
  text-align: left; vertical-align: top; } th { color: var(--muted); font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #e5e7eb; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card b { display: block; font-size: 18px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 16px; }
article.column { border: 1px solid #e5e7eb; border-radius: 6px; padding: 10px 12px; }
.facts { color: var(--muted); font-size: 13px; margin: 0 0 6px; }
.verdict { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px;
  margin-left: 6px; color: #fff; background: var(--muted); }
.verdict.drift, .verdict.failed, .verdict.worse { background: var(--bad); }
.verdict.ok, .verdict.passed, .verdict.better { background: var(--ok); }
svg.chart { max-width: 100%; height: auto; display: block; }
svg .ref { fill: var(--ref); } svg .cur { fill: var(--cur); } svg .bad { fill: var(--bad); }
svg .grey { fill: #d1d5db; } svg .axis { stroke: #9ca3af; } svg .grid { stroke: #eef0f3; }
svg .tick, svg .legend { font-size: 10px; fill: #4b5563; }
svg .line { fill: none; stroke-width: 2; } svg .threshold { stroke: var(--bad);
  stroke-dasharray: 4 3; } svg .ci { stroke: #374151; stroke-width: 2; }
svg .line-0 { stroke: #3b6fb6; } svg .dot.line-0, svg .key.line-0 { fill: #3b6fb6; }
svg .line-1 { stroke: #e0702f; } svg .dot.line-1, svg .key.line-1 { fill: #e0702f; }
svg .line-2 { stroke: #2e8b57; } svg .dot.line-2, svg .key.line-2 { fill: #2e8b57; }
svg .line-3 { stroke: #8e44ad; } svg .dot.line-3, svg .key.line-3 { fill: #8e44ad; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""
