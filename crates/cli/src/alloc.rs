//! The binary's global allocator: glibc's malloc, with every block of [`MIN_SIZE`] bytes or more
//! starting on a cache line.
//!
//! Why: glibc aligns blocks to 16 bytes, so an activation starts at one of four offsets within a
//! cache line, depending on what the heap held before. The Winograd input transforms load 16
//! floats at a time along rows; at an offset other than 0 every such load splits two lines, and
//! a paper-size forward took 10.0 s instead of 8.8 s depending on where its 48-channel 96³
//! activations fell (docs/performance.md, "Few voxels, many channels").
//!
//! How: `malloc(size + 64)` and the first 64-byte boundary at least 8 bytes in, with the
//! pointer malloc returned stored in the 8 bytes below it. glibc's own aligned allocations
//! (`posix_memalign`) were measured first: they split a free chunk around the aligned block,
//! and the fragments this leaves in a heap that keeps freed memory (`keep_freed_memory`) raised
//! a training step's peak RSS by up to 3 GiB. Over-allocating costs 64 bytes a block and leaves
//! no fragments. Smaller blocks, and layouts asking for more than malloc's 16 bytes, go to
//! [`System`] unchanged; which path a block took follows from its layout alone, so `dealloc` and
//! `realloc` know it.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks this large or larger start on a cache line (an f32 row of 1024 voxels).
pub const MIN_SIZE: usize = 4096;
/// The cache line.
pub const LINE: usize = 64;
/// What malloc aligns every block to on x86-64 and aarch64 glibc.
const MALLOC_ALIGN: usize = 16;

pub struct CacheLineAligned;

fn lined(layout: &Layout) -> bool {
    layout.size() >= MIN_SIZE && layout.align() <= MALLOC_ALIGN
}

/// The first line boundary at least 8 bytes into `raw` (a block of `size + LINE` bytes), with
/// `raw` stored just below it; null stays null.
///
/// # Safety
/// `raw` is null or a malloc block of at least `LINE` bytes more than the caller uses.
unsafe fn place(raw: *mut u8) -> *mut u8 {
    if raw.is_null() {
        return raw;
    }
    // raw is 16-aligned, so the boundary lies 8 + (0..=56) bytes in: within the extra LINE.
    let at = (raw as usize + 8).next_multiple_of(LINE) - raw as usize;
    let p = raw.add(at);
    (p as *mut usize).sub(1).write_unaligned(raw as usize);
    p
}

/// The malloc block a [`place`]d pointer lies in.
///
/// # Safety
/// `p` came from [`place`].
unsafe fn raw_of(p: *mut u8) -> *mut u8 {
    (p as *const usize).sub(1).read_unaligned() as *mut u8
}

unsafe impl GlobalAlloc for CacheLineAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !lined(&layout) {
            return System.alloc(layout);
        }
        match layout.size().checked_add(LINE) {
            Some(n) => place(libc::malloc(n) as *mut u8),
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !lined(&layout) {
            return System.alloc_zeroed(layout);
        }
        match layout.size().checked_add(LINE) {
            Some(n) => place(libc::calloc(n, 1) as *mut u8),
            None => std::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if lined(&layout) {
            libc::free(raw_of(p) as *mut libc::c_void)
        } else {
            System.dealloc(p, layout)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        match (lined(&layout), lined(&new)) {
            (false, false) => System.realloc(p, layout, new_size),
            (true, true) => {
                let Some(n) = new_size.checked_add(LINE) else {
                    return std::ptr::null_mut();
                };
                let raw = raw_of(p);
                let offset = p as usize - raw as usize;
                let moved = libc::realloc(raw as *mut libc::c_void, n) as *mut u8;
                if moved.is_null() {
                    return moved;
                }
                // The data sits at the old offset in the new block; move it to the new one's
                // boundary (the two ranges may overlap).
                let at = (moved as usize + 8).next_multiple_of(LINE) - moved as usize;
                if at != offset {
                    std::ptr::copy(
                        moved.add(offset),
                        moved.add(at),
                        layout.size().min(new_size),
                    );
                }
                place(moved)
            }
            // Crossing MIN_SIZE: a fresh block of the other kind.
            _ => {
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of random sizes across MIN_SIZE, grown and shrunk by realloc across it and within
    /// either kind, keep their bytes, and the large ones start on a line.
    #[test]
    fn blocks_keep_their_bytes_and_large_ones_start_on_a_line() {
        let a = CacheLineAligned;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % m as u64) as usize
        };
        let check = |p: *mut u8, size: usize, fill: u8| unsafe {
            if size >= MIN_SIZE {
                assert_eq!(p as usize % LINE, 0, "{size} bytes at {p:?}");
            }
            for i in 0..size {
                assert_eq!(*p.add(i), fill.wrapping_add(i as u8), "byte {i} of {size}");
            }
        };
        let mut live: Vec<(*mut u8, usize, u8)> = Vec::new();
        for round in 0..400 {
            let size = 1 + next(3 * MIN_SIZE);
            let fill = round as u8;
            unsafe {
                let layout = Layout::from_size_align(size, 4).unwrap();
                let p = if round % 3 == 0 {
                    let p = a.alloc_zeroed(layout);
                    assert!((0..size).all(|i| *p.add(i) == 0), "zeroed {size}");
                    p
                } else {
                    a.alloc(layout)
                };
                for i in 0..size {
                    *p.add(i) = fill.wrapping_add(i as u8);
                }
                live.push((p, size, fill));
                // Reallocate one live block to a random size; free another.
                let j = next(live.len());
                let (q, old, f) = live[j];
                let new_size = 1 + next(3 * MIN_SIZE);
                let r = a.realloc(q, Layout::from_size_align(old, 4).unwrap(), new_size);
                check(r, old.min(new_size), f);
                for i in old.min(new_size)..new_size {
                    *r.add(i) = f.wrapping_add(i as u8);
                }
                live[j] = (r, new_size, f);
                if round % 2 == 1 {
                    let (q, size, f) = live.swap_remove(next(live.len()));
                    check(q, size, f);
                    a.dealloc(q, Layout::from_size_align(size, 4).unwrap());
                }
            }
        }
        for (p, size, f) in live {
            check(p, size, f);
            unsafe { a.dealloc(p, Layout::from_size_align(size, 4).unwrap()) };
        }
    }

    /// Layouts asking for more than malloc's alignment get it (from System).
    #[test]
    fn wide_alignments_go_to_the_system_allocator() {
        let a = CacheLineAligned;
        for align in [32, 64, 4096] {
            let layout = Layout::from_size_align(2 * MIN_SIZE, align).unwrap();
            unsafe {
                let p = a.alloc(layout);
                assert_eq!(p as usize % align, 0);
                let q = a.realloc(p, layout, 5 * MIN_SIZE);
                assert_eq!(q as usize % align, 0);
                a.dealloc(q, Layout::from_size_align(5 * MIN_SIZE, align).unwrap());
            }
        }
    }
}
