//! `bftbench deploy`: what a deployment back end needs before a matrix runs
//! on it (today: the Docker image).

use crate::deploy::docker;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub target: DeployTarget,
}

#[derive(Subcommand, Debug)]
pub enum DeployTarget {
    /// The docker back end.
    Docker {
        #[command(subcommand)]
        action: DockerAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum DockerAction {
    /// Build the image (`FROM scratch`, a static bftbench, no registry).
    Build(BuildArgs),
    /// Say whether the docker back end can run here, and why not.
    Check,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Image tag (runs use $BFTBENCH_IMAGE, else this default).
    #[arg(long, default_value = docker::DEFAULT_IMAGE)]
    pub tag: String,
    /// A statically linked bftbench to put in the image (default: this one if
    /// static, else built with cargo from this source tree).
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

pub fn run(a: DeployArgs) -> anyhow::Result<i32> {
    match a.target {
        DeployTarget::Docker {
            action: DockerAction::Build(b),
        } => {
            docker::build_image(b.binary.as_deref(), &b.tag)?;
            Ok(0)
        }
        DeployTarget::Docker {
            action: DockerAction::Check,
        } => match docker::unavailable(&docker::image()) {
            None => {
                println!("docker back end ready (image {})", docker::image());
                Ok(0)
            }
            Some(why) => {
                println!("docker back end unavailable: {why}");
                Ok(1)
            }
        },
    }
}
