//! The loaded programs and maps of one capture: fresh from the embedded
//! object, or kept loaded by an earlier capture (`kept`).
use std::{
    collections::BTreeMap,
    os::fd::{AsFd, BorrowedFd},
};

use aya::{Ebpf, maps::Map, programs::RawTracePoint};

pub enum Objects {
    /// Loaded and verified by this capture.
    Loaded(Box<Ebpf>),
    /// Opened from pins left by an earlier capture.
    Kept {
        maps: BTreeMap<String, Map>,
        programs: BTreeMap<String, RawTracePoint>,
    },
}

impl Objects {
    pub fn map(&self, name: &str) -> Option<&Map> {
        match self {
            Objects::Loaded(ebpf) => ebpf.map(name),
            Objects::Kept { maps, .. } => maps.get(name),
        }
    }

    pub fn map_mut(&mut self, name: &str) -> Option<&mut Map> {
        match self {
            Objects::Loaded(ebpf) => ebpf.map_mut(name),
            Objects::Kept { maps, .. } => maps.get_mut(name),
        }
    }

    pub fn take_map(&mut self, name: &str) -> Option<Map> {
        match self {
            Objects::Loaded(ebpf) => ebpf.take_map(name),
            Objects::Kept { maps, .. } => maps.remove(name),
        }
    }

    /// The program `name`, if it is a raw tracepoint program.
    pub fn program_mut(&mut self, name: &str) -> Option<&mut RawTracePoint> {
        match self {
            Objects::Loaded(ebpf) => ebpf.program_mut(name)?.try_into().ok(),
            Objects::Kept { programs, .. } => programs.get_mut(name),
        }
    }

    /// Every program the kernel holds (loaded and verified), with its fd.
    pub fn loaded_programs(&self) -> Vec<(&str, BorrowedFd<'_>)> {
        match self {
            Objects::Loaded(ebpf) => ebpf
                .programs()
                .filter_map(|(name, p)| Some((name, p.fd().ok()?.as_fd())))
                .collect(),
            Objects::Kept { programs, .. } => programs
                .iter()
                .filter_map(|(name, p)| Some((name.as_str(), p.fd().ok()?.as_fd())))
                .collect(),
        }
    }

    pub fn is_loaded(&self, name: &str) -> bool {
        self.loaded_programs().iter().any(|(n, _)| *n == name)
    }

    pub fn is_kept(&self) -> bool {
        matches!(self, Objects::Kept { .. })
    }
}
