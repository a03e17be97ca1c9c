//! `bftbench plot FILE.csv`: the figures of a results file, SVG and PNG.

use crate::plot::{figures, render};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A results file written by `bftbench matrix run`.
    pub file: PathBuf,
    /// Folder for the figures (default: `<file stem>-plots` beside the file).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `results/x.csv` → `results/x<suffix>`.
pub fn beside(file: &Path, suffix: &str) -> PathBuf {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    file.with_file_name(format!("{stem}{suffix}"))
}

pub fn run(a: PlotArgs) -> anyhow::Result<i32> {
    let out = a.out.unwrap_or_else(|| beside(&a.file, "-plots"));
    for f in figures(&a.file)? {
        for p in render(&f, &out)? {
            println!("{}", p.display());
        }
    }
    Ok(0)
}
