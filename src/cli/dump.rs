//! `cairn dump`.

use anyhow::Result;
use cairn::{
    ops::dump::{self, Dumped},
    selection::Selector,
};

use super::{Ctx, exit, select::FilterArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `SNAPSHOT:PATH`: a file is written as it is, a folder as a tar stream.
    #[arg(value_parser = super::select::selector)]
    what: Selector,
    /// Read from this target only (default: the first that answers).
    #[arg(long)]
    from: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let pw = ctx.core.password()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let done = dump::run(
        &ctx.core,
        &pw,
        &args.filter.apply(args.what),
        args.from.as_deref(),
        ctx.reporter.clone(),
        &mut out,
    );
    match done {
        Ok(d) => {
            use std::io::Write;
            out.flush()?;
            let what = match d {
                Dumped::File(n) => format!("{n} bytes"),
                Dumped::Tar(n) => format!("a tar stream of {n} entries"),
            };
            ctx.reporter.print("INFO", &format!("dumped {what}"));
            Ok(exit::OK)
        }
        Err(cairn::error::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(exit::OK)
        }
        Err(e) => Err(e.into()),
    }
}
