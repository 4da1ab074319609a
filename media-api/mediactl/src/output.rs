//! What a person sees: sizes in human units, aligned tables, and progress
//! bars on a terminal (one line per event when stdout is not one).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// Whether stdout is a terminal: bars then, lines otherwise.
pub(crate) fn interactive() -> bool {
    std::io::stdout().is_terminal()
}

/// Bytes in human units: `512 B`, `1.5 KiB`, `200.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A JSON value as a cell: strings bare, null as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table's rows from a JSON array (none when it is not one).
pub(crate) fn rows(list: &Value, cells: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(cells).collect()
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Two columns: names and values.
pub(crate) fn pairs(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

/// The bars of one command: drawn on a terminal, hidden otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Bars {
    multi: MultiProgress,
    drawn: bool,
}

impl Bars {
    /// Bars that draw when stdout is a terminal.
    pub(crate) fn new() -> Self {
        let drawn = interactive();
        let target = if drawn {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            drawn,
        }
    }

    /// Whether they are drawn (else the caller prints lines).
    pub(crate) fn drawn(&self) -> bool {
        self.drawn
    }

    /// A bar of `total` bytes: bytes, rate and time left.
    pub(crate) fn bytes(&self, name: &str, total: u64) -> ProgressBar {
        self.bar(
            name,
            total,
            "{prefix:<24!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>3} {msg}",
        )
    }

    /// A bar of `total` items (a batch's jobs).
    pub(crate) fn items(&self, name: &str, total: u64) -> ProgressBar {
        self.bar(
            name,
            total,
            "{prefix:<24!} [{bar:30}] {pos:>7}/{len:<7} {per_sec:>10} ETA {eta:>3} {msg}",
        )
    }

    fn bar(&self, name: &str, total: u64, template: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Prints a line above the bars (or plainly, without them).
    pub(crate) fn println(&self, line: &str) {
        if self.drawn {
            let _ = self.multi.println(line);
        } else {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(200 * 1024 * 1024), "200.0 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
