//! Struct copies and zeroing a word at a time. LLVM leaves copies it
//! cannot prove aligned as calls to aya-ebpf's memcpy/memmove/memset,
//! which move a byte at a time: in the hot paths they were a tenth of the
//! cost of tracing. Volatile accesses keep LLVM from turning these loops
//! back into such calls.

/// Copies a `T` whose size is a multiple of 8 bytes.
#[inline(always)]
pub fn copy<T: Copy>(dst: *mut T, src: *const T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8)) };
    let (d, s) = (dst as *mut u64, src as *const u64);
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: both point at a whole `T`.
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
        i += 1;
    }
}

/// Zeroes a `T` whose size is a multiple of 8 bytes (all-zero must be a
/// valid `T`: plain integers).
#[inline(always)]
pub fn zero<T: Copy>(dst: *mut T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8)) };
    let d = dst as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: `dst` points at a whole `T`.
        unsafe { core::ptr::write_volatile(d.add(i), 0) };
        i += 1;
    }
}
