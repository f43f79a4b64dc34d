"""An automated accessibility check in the real browser: axe-core against WCAG 2.0/2.1 A and AA."""

from __future__ import annotations

from pathlib import Path

# The vendored copy, read from disk: a page whose server has gone away can be checked too.
AXE = Path(__file__).resolve().parents[2] / "static" / "vendor" / "axe-core" / "axe.min.js"

RUN_AXE = """async () => {
  const result = await axe.run(document, {
    runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
  });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def accessibility_violations(page) -> list[dict]:
    """Labels, contrast, names, landmarks… of what is on screen now; [] when it all passes."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(RUN_AXE)
