//! Figures from a results file, as SVG and PNG: throughput–latency curves per
//! series, latency distributions from the saved histograms, and throughput
//! and latency over time from the saved series.
//!
//! Data are reduced to [`Figure`]s first (plain numbers, testable), then drawn
//! by one renderer; text uses a bundled font, so no system fonts are needed.

use crate::results::{raw_dir, read_rows, PARAM_COLUMNS};
use anyhow::{bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Curves drawn per figure at most; the title says when more were left out.
pub const CURVES_MAX: usize = 12;
const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Parameters that set the offered load: they trace a curve, not a series.
const LOAD_COLUMNS: &[&str] = &["clients", "target_ops_s"];
/// Parameters that never tell runs apart in a figure's legend.
const QUIET_COLUMNS: &[&str] = &["duration_s", "warmup_s"];

#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is labelled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum XAxis {
    Linear,
    /// x = −log10(1 − percentile): 1 is 90%, 2 is 99%, 3 is 99.9%.
    Nines,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File name without extension.
    pub stem: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_axis: XAxis,
    pub curves: Vec<Curve>,
    /// An x range to shade (the warm-up, in time series).
    pub shade: Option<(f64, f64)>,
}

type Row = BTreeMap<String, String>;

fn num(r: &Row, k: &str) -> Option<f64> {
    r.get(k)?.parse().ok()
}

/// Parameter columns whose values differ between the rows.
fn varying(rows: &[Row]) -> Vec<&'static str> {
    PARAM_COLUMNS
        .iter()
        .copied()
        .filter(|c| !QUIET_COLUMNS.contains(c))
        .filter(|c| {
            let mut vals = rows.iter().map(|r| r.get(*c));
            let first = vals.next().flatten();
            vals.any(|v| v != first)
        })
        .collect()
}

fn label(r: &Row, cols: &[&str]) -> String {
    let parts: Vec<String> = cols
        .iter()
        .map(|c| format!("{c}={}", r.get(*c).map_or("", String::as_str)))
        .collect();
    if parts.is_empty() {
        "all runs".into()
    } else {
        parts.join(" ")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn capped(mut curves: Vec<Curve>, title: &str) -> (Vec<Curve>, String) {
    let total = curves.len();
    curves.truncate(CURVES_MAX);
    let title = if total > CURVES_MAX {
        format!("{title} (first {CURVES_MAX} of {total})")
    } else {
        title.to_string()
    };
    (curves, title)
}

/// Throughput against latency (`metric`, in µs, drawn in ms): one curve per
/// series, one point per offered load (median over repetitions).
pub fn throughput_latency(rows: &[Row], metric: &str) -> Figure {
    let vary = varying(rows);
    let series_cols: Vec<&str> = vary
        .iter()
        .copied()
        .filter(|c| !LOAD_COLUMNS.contains(c))
        .collect();
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<&Row>>> = BTreeMap::new();
    for r in rows {
        let load = LOAD_COLUMNS
            .iter()
            .map(|c| r.get(*c).cloned().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/");
        groups
            .entry(label(r, &series_cols))
            .or_default()
            .entry(load)
            .or_default()
            .push(r);
    }
    let curves = groups
        .into_iter()
        .map(|(label, loads)| {
            let mut points: Vec<(f64, f64, f64)> = loads
                .values()
                .map(|rs| {
                    let offered = rs
                        .first()
                        .and_then(|r| num(r, "target_ops_s").or_else(|| num(r, "clients")))
                        .unwrap_or(0.0);
                    let x = median(
                        rs.iter()
                            .filter_map(|r| num(r, "throughput_ops_s"))
                            .collect(),
                    );
                    let y = median(rs.iter().filter_map(|r| num(r, metric)).collect());
                    (offered, x, y / 1000.0)
                })
                .filter(|(_, x, y)| x.is_finite() && y.is_finite())
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Curve {
                label,
                points: points.into_iter().map(|(_, x, y)| (x, y)).collect(),
            }
        })
        .collect();
    let name = metric.trim_end_matches("_us");
    let (curves, title) = capped(curves, &format!("Throughput and {name} latency"));
    Figure {
        stem: format!("throughput-latency-{name}"),
        title,
        x_label: "Throughput (operations/s)".into(),
        y_label: format!("{name} latency (ms)"),
        x_axis: XAxis::Linear,
        curves,
        shade: None,
    }
}

/// The first ok run of every cell, labelled by what varies.
fn first_runs(rows: &[Row]) -> Vec<(String, &Row)> {
    let vary = varying(rows);
    let mut seen = std::collections::BTreeSet::new();
    rows.iter()
        .filter(|r| seen.insert(r.get("cell").cloned().unwrap_or_default()))
        .map(|r| (label(r, &vary), r))
        .collect()
}

/// Reads a `.hgrm` percentile file: (percentile, latency µs) pairs.
pub fn read_hgrm(path: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let v: f64 = w.next()?.parse().ok()?;
            let p: f64 = w.next()?.parse().ok()?;
            Some((p, v))
        })
        .collect())
}

/// Latency by percentile, HdrHistogram style: one curve per cell.
pub fn latency_cdf(rows: &[Row], runs: &Path) -> anyhow::Result<Figure> {
    let mut curves = Vec::new();
    for (label, r) in first_runs(rows) {
        let id = r.get("run_id").map_or("", String::as_str);
        let pts = read_hgrm(&runs.join(format!("{id}.hgrm")))?;
        curves.push(Curve {
            label,
            points: pts
                .into_iter()
                .filter(|(p, _)| *p < 1.0)
                .map(|(p, v)| (-(1.0 - p).log10(), v / 1000.0))
                .collect(),
        });
    }
    let (curves, title) = capped(curves, "Latency by percentile");
    Ok(Figure {
        stem: "latency-percentiles".into(),
        title,
        x_label: "Percentile".into(),
        y_label: "Latency (ms)".into(),
        x_axis: XAxis::Nines,
        curves,
        shade: None,
    })
}

/// Throughput (`ops_s`) or p99 latency over time, one curve per cell; the
/// warm-up is shaded.
pub fn time_series(rows: &[Row], runs: &Path, column: &str) -> anyhow::Result<Figure> {
    let mut curves = Vec::new();
    let mut warmup_end: f64 = 0.0;
    for (label, r) in first_runs(rows) {
        let id = r.get("run_id").map_or("", String::as_str);
        let path = runs.join(format!("{id}.series.csv"));
        let mut rd =
            csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
        let head: Vec<String> = rd.headers()?.iter().map(str::to_string).collect();
        let col = |name: &str| head.iter().position(|h| h == name);
        let (Some(t), Some(m), Some(v)) = (col("t_s"), col("measured"), col(column)) else {
            bail!("{}: no `{column}` column", path.display());
        };
        let mut points = Vec::new();
        for rec in rd.records() {
            let rec = rec?;
            let get = |i: usize| rec.get(i).and_then(|s| s.parse::<f64>().ok());
            let (Some(ts), Some(y)) = (get(t), get(v)) else {
                continue;
            };
            if get(m) == Some(0.0) {
                warmup_end = warmup_end.max(ts);
            }
            let y = if column.ends_with("_us") {
                y / 1000.0
            } else {
                y
            };
            points.push((ts, y));
        }
        curves.push(Curve { label, points });
    }
    let (what, unit) = if column == "ops_s" {
        ("Throughput", "Throughput (operations/s)".to_string())
    } else {
        let n = column.trim_end_matches("_us");
        ("Latency", format!("{n} latency (ms)"))
    };
    let (curves, title) = capped(curves, &format!("{what} over time (warm-up shaded)"));
    Ok(Figure {
        stem: format!("time-{}", column.trim_end_matches("_us").replace('_', "-")),
        title,
        x_label: "Time since the run began (s)".into(),
        y_label: unit,
        x_axis: XAxis::Linear,
        curves,
        shade: (warmup_end > 0.0).then_some((0.0, warmup_end)),
    })
}

/// Every figure of a results file (ok rows only).
pub fn figures(csv: &Path) -> anyhow::Result<Vec<Figure>> {
    let rows: Vec<Row> = read_rows(csv)?
        .into_iter()
        .filter(|r| r.get("status").map(String::as_str) == Some("ok"))
        .collect();
    if rows.is_empty() {
        bail!("{}: no successful runs to plot", csv.display());
    }
    let runs = raw_dir(csv);
    Ok(vec![
        throughput_latency(&rows, "p50_us"),
        throughput_latency(&rows, "p99_us"),
        latency_cdf(&rows, &runs)?,
        time_series(&rows, &runs, "ops_s")?,
        time_series(&rows, &runs, "p99_us")?,
    ])
}

fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    match x {
        x if x < 0.5 => format!("{p:.0}%"),
        x if x < 1.5 => "90%".into(),
        _ => format!("{p:.*}%", (x.round() as usize).saturating_sub(2)),
    }
}

/// A tick value with as many decimals as the axis span needs.
fn tick_label(v: f64, span: f64) -> String {
    let decimals = match span {
        s if s >= 50.0 => 0,
        s if s >= 5.0 => 1,
        s if s >= 0.5 => 2,
        _ => 3,
    };
    let t = format!("{v:.decimals$}");
    if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    }
}

fn bounds(curves: &[Curve]) -> ((f64, f64), (f64, f64)) {
    let pts = curves.iter().flat_map(|c| c.points.iter());
    let (mut x1, mut y1) = (0.0f64, 0.0f64);
    for (x, y) in pts {
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    ((0.0, (x1 * 1.05).max(1e-9)), (0.0, (y1 * 1.1).max(1e-9)))
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, f: &Figure) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let ((x0, x1), (y0, y1)) = bounds(&f.curves);
    let x1 = if f.x_axis == XAxis::Nines {
        x1.ceil()
    } else {
        x1
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(&f.title, (FONT, 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    if let Some((a, b)) = f.shade {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b, y1)],
                RGBColor(230, 230, 230).filled(),
            )))
            .map_err(err)?;
    }
    let nines = f.x_axis == XAxis::Nines;
    chart
        .configure_mesh()
        .x_desc(&f.x_label)
        .y_desc(&f.y_label)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 14))
        .x_labels(if nines { x1 as usize + 1 } else { 10 })
        .x_label_formatter(&|x| {
            if nines {
                nines_label(*x)
            } else {
                tick_label(*x, x1 - x0)
            }
        })
        .y_label_formatter(&|y| tick_label(*y, y1 - y0))
        .draw()
        .map_err(err)?;
    for (i, c) in f.curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(c.points.iter().copied(), style))
            .map_err(err)?
            .label(&c.label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        if c.points.len() <= 40 {
            chart
                .draw_series(c.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png` into `dir`.
pub fn render(f: &Figure, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    static FONT_READY: std::sync::Once = std::sync::Once::new();
    FONT_READY.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let svg = dir.join(format!("{}.svg", f.stem));
    let png = dir.join(format!("{}.png", f.stem));
    draw(
        SVGBackend::new(&svg, (WIDTH, HEIGHT)).into_drawing_area(),
        f,
    )?;
    draw(
        BitMapBackend::new(&png, (WIDTH, HEIGHT)).into_drawing_area(),
        f,
    )?;
    Ok(vec![svg, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(protocol: &str, clients: &str, rep: &str, tput: &str, p50: &str) -> Row {
        [
            ("protocol", protocol),
            ("clients", clients),
            ("repetition", rep),
            ("cell", &format!("{protocol}-{clients}")),
            ("throughput_ops_s", tput),
            ("p50_us", p50),
            ("status", "ok"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn a_curve_per_series_a_point_per_load_medians_over_repetitions() {
        let rows = vec![
            row("bft", "1", "1", "100", "1000"),
            row("bft", "1", "2", "300", "3000"),
            row("bft", "1", "3", "200", "2000"),
            row("bft", "8", "1", "800", "4000"),
            row("bare", "1", "1", "1000", "100"),
        ];
        let f = throughput_latency(&rows, "p50_us");
        assert_eq!(f.curves.len(), 2);
        let bft = f.curves.iter().find(|c| c.label == "protocol=bft").unwrap();
        // Median of the three repetitions, latency in ms, in order of load.
        assert_eq!(bft.points, vec![(200.0, 2.0), (800.0, 4.0)]);
        assert_eq!(f.y_label, "p50 latency (ms)");
    }

    #[test]
    fn ticks_show_the_decimals_the_span_needs() {
        assert_eq!(tick_label(0.25, 3.0), "0.25");
        assert_eq!(tick_label(2.0, 3.0), "2");
        assert_eq!(tick_label(12000.0, 20000.0), "12000");
        assert_eq!(tick_label(7.5, 20.0), "7.5");
    }

    #[test]
    fn percentiles_map_to_nines() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
    }

    #[test]
    fn too_many_curves_are_cut_and_the_title_says_so() {
        let curves = (0..20)
            .map(|i| Curve {
                label: i.to_string(),
                points: vec![],
            })
            .collect();
        let (kept, title) = capped(curves, "T");
        assert_eq!(kept.len(), CURVES_MAX);
        assert_eq!(title, "T (first 12 of 20)");
    }
}
