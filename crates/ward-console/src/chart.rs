//! Charts as inline SVG drawn by the server: nothing fetched, no script, readable by a screen
//! reader (each chart is an image with a title and a description listing every value).

use maud::{html, Markup};

/// One bar: its label, its value, and a class that colours it (`legacy`, `plain`, `none` or
/// empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub value: u64,
    pub class: &'static str,
}

const ROW: u32 = 26;
const LABEL_WIDTH: u32 = 150;
const BAR_SPACE: u32 = 300;
const WIDTH: u32 = LABEL_WIDTH + BAR_SPACE + 80;

/// The width of a bar for `value` when the largest is `max`: proportional, at least one pixel
/// for a value above zero, zero for zero.
pub fn bar_width(value: u64, max: u64) -> u32 {
    if value == 0 || max == 0 {
        return 0;
    }
    let width = (value as u128 * BAR_SPACE as u128 / max as u128) as u32;
    width.clamp(1, BAR_SPACE)
}

/// A horizontal bar chart. `id` names it for `aria-labelledby`.
pub fn bars(id: &str, title: &str, bars: &[Bar]) -> Markup {
    let max = bars.iter().map(|bar| bar.value).max().unwrap_or(0);
    let height = ROW * bars.len().max(1) as u32 + 4;
    let description: Vec<String> = bars
        .iter()
        .map(|bar| format!("{}: {}", bar.label, bar.value))
        .collect();
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    html! {
        svg.chart #(id) role="img" viewBox=(format!("0 0 {WIDTH} {height}"))
            aria-labelledby=(format!("{title_id} {desc_id}")) xmlns="http://www.w3.org/2000/svg" {
            title #(title_id) { (title) }
            desc #(desc_id) {
                @if bars.is_empty() { "nothing to show" } @else { (description.join(", ")) }
            }
            @if bars.is_empty() {
                text x="0" y="18" { "nothing to show yet" }
            }
            @for (index, bar) in bars.iter().enumerate() {
                @let y = index as u32 * ROW;
                @let width = bar_width(bar.value, max);
                text x="0" y=(y + 17) { (bar.label) }
                rect class=(format!("bar {}", bar.class)) x=(LABEL_WIDTH) y=(y + 4)
                    width=(width) height=(ROW - 8) rx="2" {}
                text x=(LABEL_WIDTH + width + 6) y=(y + 17) { (bar.value) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_proportional_and_never_invisible() {
        let cases = [
            (0, 0, 0),
            (0, 10, 0),
            (10, 10, BAR_SPACE),
            (5, 10, BAR_SPACE / 2),
            (1, 1_000_000, 1),
            (1_000_000, 1_000_000, BAR_SPACE),
            (u64::MAX, u64::MAX, BAR_SPACE),
        ];
        for (value, max, expected) in cases {
            assert_eq!(bar_width(value, max), expected, "{value} of {max}");
        }
    }

    #[test]
    fn a_chart_describes_every_value() {
        let svg = bars(
            "versions",
            "Agents by TLS version",
            &[
                Bar {
                    label: "TLSv1.3".into(),
                    value: 7,
                    class: "",
                },
                Bar {
                    label: "TLSv1 <old>".into(),
                    value: 2,
                    class: "legacy",
                },
            ],
        )
        .into_string();
        assert!(svg.contains("TLSv1.3: 7, TLSv1 &lt;old&gt;: 2"), "{svg}");
        assert!(svg.contains(r#"role="img""#), "{svg}");
        assert!(svg.contains(r#"class="bar legacy""#), "{svg}");
        assert!(
            !svg.contains("style="),
            "no inline style (the CSP forbids it)"
        );
        let empty = bars("e", "Empty", &[]).into_string();
        assert!(empty.contains("nothing to show"), "{empty}");
    }
}
