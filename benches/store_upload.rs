//! Raw upload throughput of one target's store: writes every file below a folder through
//! cairn's `Store` for that target (as the fan-out does), and prints MB/s.
//!
//! usage: cargo bench --bench store_upload -- CONFIG TARGET DIR [PREFIX]

use std::{path::Path, time::Instant};

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable folder") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out)
        } else {
            out.push(p)
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [config, target, dir, rest @ ..] = &args[..] else {
        eprintln!("usage: store_upload CONFIG TARGET DIR [PREFIX]");
        std::process::exit(2);
    };
    let prefix = rest.first().map_or("bench-upload", String::as_str);
    let cfg = cairn::config::Config::load(Path::new(config)).expect("config");
    let target = cfg.target(target).expect("target").clone();
    let ctx = cairn::context::Context::new(cfg, std::sync::Arc::new(cairn::progress::Silent));
    let store = ctx.open_store(&target).expect("store");
    let mut list = Vec::new();
    files(Path::new(dir), &mut list);
    let start = Instant::now();
    let mut bytes = 0u64;
    for p in &list {
        let data = std::fs::read(p).expect("read");
        bytes += data.len() as u64;
        let name = format!("{prefix}/{}", p.file_name().unwrap().to_string_lossy());
        store.write(&name, vec![data.into()]).expect("write");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} files, {:.0} MB in {secs:.2}s: {:.1} MB/s to {}",
        list.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        store.location()
    );
}
