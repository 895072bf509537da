//! The memory of a host-wide limiter: a writable Python buffer (an `mmap.mmap` of a memfd
//! or a `/dev/shm` file, mapped `MAP_SHARED` by every worker process) seen as the
//! `AtomicU64` words the core's slot table works in.
//!
//! The only `unsafe` in the binding, kept to one conversion: a buffer is pointer and length,
//! and atomics over it need a slice made from them.

#![allow(unsafe_code)]

use std::sync::atomic::AtomicU64;

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;

use crate::errors::value_error;

/// A writable, 8-byte aligned, C-contiguous buffer held exported for as long as this lives,
/// seen as words.
pub struct SharedWords {
    /// Holding the export keeps the memory mapped: `mmap.close()` and `resize()` refuse
    /// while a buffer is exported (`BufferError`).
    _buffer: PyBuffer<u8>,
    /// The buffer's address (a `usize`, so the words are `Send` and `Sync` as atomics are).
    address: usize,
    words: usize,
}

impl SharedWords {
    /// The words of `obj`'s buffer (ValueError unless writable, contiguous, 8-byte aligned
    /// and at least one word long).
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let buffer = PyBuffer::<u8>::get(obj)?;
        if buffer.readonly() {
            return Err(value_error("shared memory must be writable"));
        }
        if !buffer.is_c_contiguous() {
            return Err(value_error("shared memory must be contiguous"));
        }
        let address = buffer.buf_ptr() as usize;
        if !address.is_multiple_of(std::mem::align_of::<AtomicU64>()) {
            return Err(value_error("shared memory must be 8-byte aligned"));
        }
        let words = buffer.len_bytes() / std::mem::size_of::<AtomicU64>();
        if words == 0 {
            return Err(value_error("shared memory is empty"));
        }
        Ok(Self {
            _buffer: buffer,
            address,
            words,
        })
    }
}

impl AsRef<[AtomicU64]> for SharedWords {
    #[inline]
    fn as_ref(&self) -> &[AtomicU64] {
        // SAFETY: `address` is the start of a writable, contiguous buffer of at least
        // `words * 8` bytes, aligned for `AtomicU64` (checked in `new`), which stays mapped
        // while `_buffer` holds it exported, and so for as long as `&self` lives. The words
        // are only ever accessed atomically (by this process's core and by the other
        // processes mapping the same memory; the Python side only creates and maps it), so
        // shared references to atomics over them are sound. `AtomicU64` has the size and
        // alignment of `u64`, and every bit pattern is a valid value.
        unsafe { std::slice::from_raw_parts(self.address as *const AtomicU64, self.words) }
    }
}
