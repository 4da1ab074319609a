//! Wall-clock and CPU time of repeated runs, and the report they make.

use std::time::Instant;

use serde::Serialize;

/// CPU seconds this process and its waited-for children have used so far.
pub(crate) fn cpu_seconds() -> f64 {
    crate::proc_stats::cpu_seconds("self", true).unwrap_or(0.0)
}

/// Timings of one thing done `runs` times.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Timing {
    /// What was run.
    pub(crate) name: String,
    /// Wall-clock seconds of each run.
    pub(crate) wall: Vec<f64>,
    /// CPU seconds per run, averaged (process and children).
    pub(crate) cpu_per_run: f64,
}

impl Timing {
    pub(crate) fn median(&self) -> f64 {
        let mut w = self.wall.clone();
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    }

    pub(crate) fn min(&self) -> f64 {
        self.wall.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// Warms both sides up, then times `runs` rounds of `ours` then `baseline`,
/// interleaved so that drift in the machine (the other core's load, the CPU
/// clock) falls on both sides alike.
pub(crate) fn time_pair(
    names: (&str, &str),
    runs: usize,
    mut ours: impl FnMut() -> anyhow::Result<()>,
    mut baseline: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Timing, Timing)> {
    ours()?;
    baseline()?;
    let mut sides = [
        (Vec::with_capacity(runs), 0.0f64),
        (Vec::with_capacity(runs), 0.0f64),
    ];
    for _ in 0..runs {
        for (side, f) in [
            (0, &mut ours as &mut dyn FnMut() -> anyhow::Result<()>),
            (1, &mut baseline),
        ] {
            let cpu = cpu_seconds();
            let start = Instant::now();
            f()?;
            sides[side].0.push(start.elapsed().as_secs_f64());
            sides[side].1 += cpu_seconds() - cpu;
        }
    }
    let [(ours_wall, ours_cpu), (base_wall, base_cpu)] = sides;
    let per_run = |cpu: f64| cpu / runs.max(1) as f64;
    Ok((
        Timing {
            name: names.0.to_owned(),
            wall: ours_wall,
            cpu_per_run: per_run(ours_cpu),
        },
        Timing {
            name: names.1.to_owned(),
            wall: base_wall,
            cpu_per_run: per_run(base_cpu),
        },
    ))
}

/// One comparison: ours against a baseline, on the same input.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    /// What is compared.
    pub(crate) name: String,
    /// Our side.
    pub(crate) ours: Timing,
    /// The baseline.
    pub(crate) baseline: Timing,
    /// Median wall time, ours / baseline (lower is better; the goal).
    pub(crate) wall_ratio: f64,
    /// CPU time, ours / baseline.
    pub(crate) cpu_ratio: f64,
    /// The goal for `wall_ratio`.
    pub(crate) goal: f64,
}

impl Comparison {
    pub(crate) fn new(name: &str, ours: Timing, baseline: Timing, goal: f64) -> Self {
        Self {
            name: name.to_owned(),
            wall_ratio: ours.median() / baseline.median(),
            cpu_ratio: ours.cpu_per_run / baseline.cpu_per_run,
            ours,
            baseline,
            goal,
        }
    }
}

/// What a benchmark prints.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Facts about the run (inputs, settings).
    pub(crate) setup: serde_json::Value,
    /// The comparisons.
    pub(crate) comparisons: Vec<Comparison>,
}

impl Report {
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("setup: {}\n\n", self.setup));
        out.push_str(&format!(
            "{:<34} {:>10} {:>10} {:>10} {:>9} {:>9} {:>6}\n",
            "run", "median s", "min s", "cpu s/run", "wall x", "cpu x", "goal"
        ));
        for c in &self.comparisons {
            for (t, ratios) in [
                (&c.ours, Some((c.wall_ratio, c.cpu_ratio, c.goal))),
                (&c.baseline, None),
            ] {
                let (w, cpu, goal) = match ratios {
                    Some((w, cpu, goal)) => {
                        (format!("{w:.3}"), format!("{cpu:.3}"), format!("≤{goal}"))
                    }
                    None => ("1".into(), "1".into(), String::new()),
                };
                out.push_str(&format!(
                    "{:<34} {:>10.4} {:>10.4} {:>10.4} {:>9} {:>9} {:>6}\n",
                    t.name,
                    t.median(),
                    t.min(),
                    t.cpu_per_run,
                    w,
                    cpu,
                    goal
                ));
            }
        }
        out
    }
}
