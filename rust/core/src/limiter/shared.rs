//! One limiter for every worker process of a host: a [`SlotStore`] over memory the processes
//! share, behind a small header that makes every process hash and tell time alike.
//!
//! The caller maps the memory (a `memfd` or a file in `/dev/shm`, `MAP_SHARED`) and hands
//! it over as words; this module does no I/O. The first process to attach a blank (all-zero)
//! table writes the header; the others wait for it and read it:
//!
//! | word | meaning                                                                 |
//! |------|-------------------------------------------------------------------------|
//! | 0    | state: 0 blank, 1 being written, [`MAGIC`] ready                        |
//! | 1    | layout: [`LAYOUT`] (the slot layout and TAT encoding of this build)     |
//! | 2–5  | the hashing seed (random, chosen once per table)                        |
//! | 6    | the time origin: `CLOCK_MONOTONIC` ns when the table was made           |
//! | 7    | a probe: the hash of a fixed id under the seed                          |
//!
//! The probe catches a process whose hashing differs (another build of `ahash`): it would
//! put ids in other slots, giving them a second bucket, so it is refused instead. Time is
//! [`HostClock`] from the origin: the same in every process, unlike the TSC clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::{Clock, HostClock};
use crate::error::{CoreError, CoreResult};

use super::slots::{SlotStore, GROUP_SLOTS, GROUP_WORDS};
use super::Limiter;

/// Words before the slot table.
pub const HEADER_WORDS: usize = 8;

/// Word 0 of a ready table ("tgslots1").
pub const MAGIC: u64 = u64::from_be_bytes(*b"tgslots1");

/// Word 1: what a table's words mean. Bump it whenever the slot layout or the TAT encoding
/// changes, so that processes of two builds never share a table.
pub const LAYOUT: u64 = ((GROUP_SLOTS as u64) << 32) | ((GROUP_WORDS as u64) << 16) | 2;

const BLANK: u64 = 0;
const WRITING: u64 = 1;

/// The id whose hash is the probe word.
const PROBE_ID: &str = "tenantgate: slot table probe";

/// Yields while waiting for another process to finish the header before giving up.
const YIELDS_BEFORE_GIVING_UP: u32 = 1_000_000;

/// The slot words of a shared table: `words` from [`HEADER_WORDS`] on.
#[derive(Debug)]
pub struct Table<S> {
    words: S,
}

impl<S: AsRef<[AtomicU64]>> AsRef<[AtomicU64]> for Table<S> {
    #[inline]
    fn as_ref(&self) -> &[AtomicU64] {
        let words = self.words.as_ref();
        &words[HEADER_WORDS.min(words.len())..]
    }
}

impl<S: AsRef<[AtomicU64]>> Table<S> {
    /// All the words, header included.
    pub fn words(&self) -> &S {
        &self.words
    }
}

/// A limiter over a shared table.
pub type SharedLimiter<S> = Limiter<SlotStore<Table<S>>>;

/// The words a shared table of at least `buckets` buckets needs, header included.
#[must_use]
pub fn words_for(buckets: usize) -> usize {
    HEADER_WORDS + SlotStore::<Vec<AtomicU64>>::words_for(buckets)
}

/// The header a process reads when it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The hashing seed.
    pub seed: [u64; 4],
    /// `CLOCK_MONOTONIC` ns when the table was made.
    pub origin: u64,
}

/// Attaches to the table in `words` (writing its header if they are blank) and returns a
/// limiter over it that reads [`HostClock`] from the table's origin.
///
/// # Errors
/// [`CoreError::InvalidArgument`] if the words are not a header and whole groups, are not a
/// table of this layout, were written by a process that hashes differently, or another
/// process started writing the header and never finished.
pub fn attach<S: AsRef<[AtomicU64]>>(words: S) -> CoreResult<SharedLimiter<S>> {
    let header = read_or_write_header(words.as_ref())?;
    let clock: Arc<dyn Clock> = Arc::new(HostClock::since(header.origin));
    over(words, header, clock)
}

/// [`attach`], reading `clock` instead (tests drive time with a [`crate::ManualClock`]).
///
/// # Errors
/// As [`attach`].
pub fn attach_with_clock<S: AsRef<[AtomicU64]>>(
    words: S,
    clock: Arc<dyn Clock>,
) -> CoreResult<SharedLimiter<S>> {
    let header = read_or_write_header(words.as_ref())?;
    over(words, header, clock)
}

fn over<S: AsRef<[AtomicU64]>>(
    words: S,
    header: Header,
    clock: Arc<dyn Clock>,
) -> CoreResult<SharedLimiter<S>> {
    let store = SlotStore::new(Table { words }, header.seed)?;
    Ok(Limiter::with_store(store, clock))
}

/// The header of `words`, written first if they are blank.
fn read_or_write_header(words: &[AtomicU64]) -> CoreResult<Header> {
    let n = words.len();
    if n <= HEADER_WORDS || !(n - HEADER_WORDS).is_multiple_of(GROUP_WORDS) {
        return Err(CoreError::InvalidArgument(
            "shared table must be a header and a whole number of slot groups",
        ));
    }
    let state = &words[0];
    if state
        .compare_exchange(BLANK, WRITING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| CoreError::Random(e.to_string()))?;
        let seed: [u64; 4] = std::array::from_fn(|i| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[8 * i..8 * i + 8]);
            u64::from_le_bytes(b)
        });
        words[1].store(LAYOUT, Ordering::Relaxed);
        for (w, s) in words[2..6].iter().zip(seed) {
            w.store(s, Ordering::Relaxed);
        }
        words[6].store(HostClock::raw_ns(), Ordering::Relaxed);
        words[7].store(probe(&seed), Ordering::Relaxed);
        state.store(MAGIC, Ordering::Release);
    }
    let mut yields = 0u32;
    loop {
        match state.load(Ordering::Acquire) {
            MAGIC => break,
            WRITING if yields < YIELDS_BEFORE_GIVING_UP => {
                yields += 1;
                std::thread::yield_now();
            }
            WRITING => {
                return Err(CoreError::InvalidArgument(
                    "shared table header was never finished (its writer died?): make a new one",
                ))
            }
            _ => {
                return Err(CoreError::InvalidArgument(
                    "memory is not a tenantgate slot table",
                ))
            }
        }
    }
    if words[1].load(Ordering::Relaxed) != LAYOUT {
        return Err(CoreError::InvalidArgument(
            "shared table has another layout (made by another build of tenantgate)",
        ));
    }
    let seed: [u64; 4] = std::array::from_fn(|i| words[2 + i].load(Ordering::Relaxed));
    if words[7].load(Ordering::Relaxed) != probe(&seed) {
        return Err(CoreError::InvalidArgument(
            "shared table hashes differently (made by another build of tenantgate)",
        ));
    }
    Ok(Header {
        seed,
        origin: words[6].load(Ordering::Relaxed),
    })
}

/// The probe word of a table with `seed`.
fn probe(seed: &[u64; 4]) -> u64 {
    ahash::RandomState::with_seeds(seed[0], seed[1], seed[2], seed[3]).hash_one(PROBE_ID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limiter::{BucketStore, Quota};

    fn blank(buckets: usize) -> Vec<AtomicU64> {
        (0..words_for(buckets)).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn two_attachments_are_one_limiter() {
        let words = blank(100);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0.0).unwrap());
        let one = attach_with_clock(&words[..], clock.clone()).unwrap();
        let two = attach_with_clock(&words[..], clock).unwrap();
        let q = Quota::new(1.0, 3).unwrap();
        assert!(one.try_acquire("t", &q, 2).allowed);
        assert_eq!(two.try_acquire("t", &q, 1).remaining, 0);
        assert!(!one.try_acquire("t", &q, 1).allowed);
        assert_eq!(two.len(), 1);
        assert!(one.capacity() >= 100);
    }

    #[test]
    fn the_header_is_written_once_and_read_back() {
        let words = blank(7);
        let a = read_or_write_header(&words).unwrap();
        let b = read_or_write_header(&words).unwrap();
        assert_eq!(a, b);
        assert_eq!(words[0].load(Ordering::Relaxed), MAGIC);
        assert!(a.origin > 0);
        // A real clock from the origin starts near zero.
        let limiter = attach(&words[..]).unwrap();
        assert!(limiter.clock().monotonic_ns() < 60 * 1_000_000_000);
    }

    #[test]
    fn foreign_or_damaged_memory_is_refused() {
        assert!(attach(&blank(7)[..HEADER_WORDS]).is_err());
        assert!(attach(&blank(7)[..HEADER_WORDS + 3]).is_err());
        let words = blank(7);
        words[0].store(12345, Ordering::Relaxed);
        assert!(attach(&words[..]).is_err(), "not our magic");
        let words = blank(7);
        read_or_write_header(&words).unwrap();
        words[1].store(LAYOUT + 1, Ordering::Relaxed);
        assert!(attach(&words[..]).is_err(), "another layout");
        let words = blank(7);
        read_or_write_header(&words).unwrap();
        words[2].fetch_add(1, Ordering::Relaxed);
        assert!(attach(&words[..]).is_err(), "another hash");
    }

    #[test]
    fn attaching_from_many_threads_agrees_on_one_header() {
        let words = blank(70);
        let headers: Vec<Header> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| read_or_write_header(&words).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(headers.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn the_table_holds_what_it_was_sized_for() {
        let words = blank(1000);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0.0).unwrap());
        let limiter = attach_with_clock(&words[..], clock).unwrap();
        assert_eq!(
            limiter.capacity(),
            1000usize.div_ceil(GROUP_SLOTS) * GROUP_SLOTS
        );
        let q = Quota::new(1.0, 3).unwrap();
        for i in 0..5000 {
            limiter.try_acquire(&format!("id{i}"), &q, 1);
        }
        assert!(limiter.store().len() <= limiter.capacity());
    }
}
