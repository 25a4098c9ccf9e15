//! The cost of robustness: size and file count of the minimal image at
//! every `--keep` level, for the same trace (`trace report --from SRC`).
use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::session::build::human;
use crate::{
    closure::{self, Level, Options, rules::Rules},
    model::trace::Trace,
    source::rootfs::{DataBytes, Kind, Rootfs},
};

#[derive(Clone, Debug, Serialize)]
pub struct LevelSize {
    pub level: Level,
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Every entry (files, directories, links).
    pub entries: u64,
}

pub fn every_level(fs: &dyn Rootfs, trace: &Trace, opts: &Options) -> Result<Vec<LevelSize>> {
    let mut out = Vec::new();
    for level in Level::ALL {
        let o = Options {
            keep: level,
            ..opts.clone()
        };
        let kept = closure::compute_with(fs, std::slice::from_ref(trace), &Rules::default(), &o)?;
        let (mut bytes, mut files) = (DataBytes::default(), 0);
        for p in kept.paths.keys() {
            if let Ok(Some(m)) = fs.meta(p)
                && m.kind == Kind::Regular
            {
                files += 1;
                bytes.add(&m);
            }
        }
        out.push(LevelSize {
            level,
            bytes: bytes.total,
            files,
            entries: kept.paths.len() as u64,
        });
    }
    Ok(out)
}

pub fn table(levels: &[LevelSize]) -> String {
    let mut s = String::from("Size at every --keep level:\n ");
    let _ = write!(s, "{:>8}", "");
    for l in levels {
        let _ = write!(s, " {:>13}", l.level.name());
    }
    s.push_str("\n  size   ");
    for l in levels {
        let _ = write!(s, " {:>13}", human(l.bytes));
    }
    s.push_str("\n  files  ");
    for l in levels {
        let _ = write!(s, " {:>13}", l.files);
    }
    s.push('\n');
    s
}

pub fn html_table(levels: &[LevelSize]) -> String {
    let mut h = String::from("<h2>Size at every --keep level</h2><table><tr><th></th>");
    for l in levels {
        let _ = write!(h, "<th>{}</th>", l.level.name());
    }
    h.push_str("</tr><tr><td>size</td>");
    for l in levels {
        let _ = write!(h, "<td>{}</td>", human(l.bytes));
    }
    h.push_str("</tr><tr><td>files</td>");
    for l in levels {
        let _ = write!(h, "<td>{}</td>", l.files);
    }
    h.push_str("</tr></table>");
    h
}
