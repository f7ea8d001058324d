//! The overview's bar chart of daily volume, drawn as inline SVG: one chart
//! per currency (amounts of different currencies never add up), geometry
//! computed here so the template only places rectangles.

use crate::admin::format;

/// The drawing's own units; it is shown about this size on a laptop, so
/// its text keeps its size.
pub const WIDTH: i64 = 1000;
pub const HEIGHT: i64 = 180;
/// Room at the bottom for the day labels, and above the tallest bar.
const AXIS_PX: i64 = 24;
const TOP_PX: i64 = 10;

#[derive(Debug, Clone)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// Centre of the bar, for its day label.
    pub label_x: i64,
    pub day_label: String,
    /// The tooltip: "2026-11-01: 1,234.00 USD in 12 payments".
    pub title: String,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub currency: String,
    pub total: String,
    pub max_label: String,
    pub bars: Vec<Bar>,
    pub width: i64,
    pub height: i64,
    pub baseline_y: i64,
    /// Where the peak and half of it are, for the guide lines.
    pub peak_y: i64,
    pub half_y: i64,
    pub label_y: i64,
}

/// `days` are the UTC days shown, oldest first ("2026-11-01"); `points` are
/// (day, amount_minor, payments) of one currency, any order, days missing
/// meaning nothing that day.
pub fn build(currency: &str, days: &[String], points: &[(String, i64, i64)]) -> Chart {
    let value_of = |day: &str| points.iter().find(|(d, _, _)| d == day).map_or((0, 0), |(_, a, n)| (*a, *n));
    let max = days.iter().map(|d| value_of(d).0).max().unwrap_or(0).max(1);
    let plot_height = HEIGHT - AXIS_PX - TOP_PX;
    let slot = WIDTH / (days.len().max(1) as i64);
    let bar_width = (slot * 7 / 10).max(2);
    let baseline_y = HEIGHT - AXIS_PX;
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, day)| {
            let (amount, payments) = value_of(day);
            // i128: amount × height never overflows, however large the amount.
            let height = (i128::from(amount) * i128::from(plot_height) / i128::from(max)) as i64;
            let height = if amount > 0 { height.max(2) } else { 0 };
            let x = i as i64 * slot + (slot - bar_width) / 2;
            Bar {
                x,
                y: baseline_y - height,
                width: bar_width,
                height,
                label_x: x + bar_width / 2,
                day_label: day.get(5..).unwrap_or(day).replace('-', "/"),
                title: format!(
                    "{day}: {} in {payments} payment{}",
                    format::money(amount, currency),
                    if payments == 1 { "" } else { "s" }
                ),
            }
        })
        .collect();
    let total: i64 = points.iter().map(|(_, a, _)| *a).sum();
    Chart {
        currency: currency.to_string(),
        total: format::money(total, currency),
        max_label: format::money(if max == 1 { 0 } else { max }, currency),
        bars,
        width: WIDTH,
        height: HEIGHT,
        baseline_y,
        peak_y: TOP_PX,
        half_y: TOP_PX + plot_height / 2,
        label_y: HEIGHT - 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tallest_day_fills_the_plot_and_empty_days_have_no_bar() {
        let days: Vec<String> = (1..=14).map(|d| format!("2026-11-{d:02}")).collect();
        let chart = build("USD", &days, &[("2026-11-03".into(), 5_000, 2), ("2026-11-14".into(), 10_000, 4)]);
        assert_eq!(chart.bars.len(), 14);
        assert_eq!(chart.bars[0].height, 0);
        assert_eq!(chart.bars[13].height, HEIGHT - AXIS_PX - TOP_PX);
        assert_eq!(chart.bars[2].height * 2, chart.bars[13].height);
        assert_eq!(chart.bars[13].day_label, "11/14");
        assert_eq!(chart.total, "150.00 USD");
        assert!(chart.bars[13].title.contains("100.00 USD in 4 payments"));
        assert!(chart.bars.iter().all(|b| b.x + b.width <= WIDTH));
    }

    #[test]
    fn a_huge_amount_does_not_overflow() {
        let days = vec!["2026-11-01".to_string()];
        let chart = build("USD", &days, &[("2026-11-01".into(), i64::MAX, 1)]);
        assert_eq!(chart.bars[0].height, HEIGHT - AXIS_PX - TOP_PX);
    }
}
