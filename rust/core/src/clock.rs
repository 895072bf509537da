//! Time sources. The verifier and limiter read time only through [`Clock`], so tests can
//! drive it with [`ManualClock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, CoreResult};

/// Nanoseconds per second.
pub const NANOS_PER_SECOND: f64 = 1e9;

/// A source of monotonic and wall-clock time.
pub trait Clock: Debug + Send + Sync {
    /// Nanoseconds on a monotonic clock (never goes backwards; the origin is arbitrary).
    fn monotonic_ns(&self) -> u64;
    /// Seconds since the Unix epoch (wall clock; may jump).
    fn unix_seconds(&self) -> f64;
}

/// The real clock: the TSC (through `quanta`) for monotonic time and [`SystemTime`] for wall
/// time.
///
/// Monotonic time reads the TSC and scales it (~10 ns) rather than `Instant::now` (~23 ns
/// under a kvm-clock vDSO); `quanta` falls back to `CLOCK_MONOTONIC` where the TSC is not
/// invariant. All `SystemClock`s share one calibrated clock and one origin (the first one's
/// creation), so their readings are comparable.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    clock: &'static quanta::Clock,
    /// The raw reading at the origin.
    origin: u64,
}

/// The calibrated clock (calibration takes about a millisecond, once) and its origin.
static TSC: OnceLock<(quanta::Clock, u64)> = OnceLock::new();

impl SystemClock {
    /// A clock on the process-wide monotonic origin.
    #[must_use]
    pub fn new() -> Self {
        let (clock, origin) = TSC.get_or_init(|| {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            (clock, origin)
        });
        Self {
            clock,
            origin: *origin,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn monotonic_ns(&self) -> u64 {
        // 0 for a reading at or before the origin (a TSC a few cycles behind on another core).
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }

    #[inline]
    fn unix_seconds(&self) -> f64 {
        wall_seconds()
    }
}

/// `CLOCK_MONOTONIC` from an origin: the time base of memory shared by the processes of one
/// host ([`crate::limiter::shared`]), since every process reads the same clock.
///
/// [`SystemClock`]'s TSC readings are not comparable across processes: each has its own
/// origin and its own calibration (a 10⁻⁵ disagreement is 10 ms after 1000 s). This clock
/// costs a vDSO call (about 20 ns) instead.
#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    origin: u64,
}

impl HostClock {
    /// A clock reading `CLOCK_MONOTONIC` nanoseconds since `origin` (a [`HostClock::raw_ns`]
    /// reading; 0 for readings before it).
    #[must_use]
    pub fn since(origin: u64) -> Self {
        Self { origin }
    }

    /// `CLOCK_MONOTONIC` in nanoseconds since boot: the same in every process of the host.
    #[must_use]
    pub fn raw_ns() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }
}

impl Clock for HostClock {
    #[inline]
    fn monotonic_ns(&self) -> u64 {
        Self::raw_ns().saturating_sub(self.origin)
    }

    #[inline]
    fn unix_seconds(&self) -> f64 {
        wall_seconds()
    }
}

/// A clock that moves only when told to. Monotonic time starts at 0.
#[derive(Debug)]
pub struct ManualClock {
    monotonic_ns: AtomicU64,
    unix_bits: AtomicU64,
}

impl ManualClock {
    /// A clock at monotonic time 0 and the given Unix time.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `unix_seconds` is not finite.
    pub fn new(unix_seconds: f64) -> CoreResult<Self> {
        check_finite(unix_seconds, "unix_time must be finite")?;
        Ok(Self {
            monotonic_ns: AtomicU64::new(0),
            unix_bits: AtomicU64::new(unix_seconds.to_bits()),
        })
    }

    /// Moves monotonic and Unix time forward together by `seconds`.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `seconds` is negative or not finite.
    pub fn advance(&self, seconds: f64) -> CoreResult<()> {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(CoreError::InvalidArgument(
                "seconds must be finite and not negative",
            ));
        }
        // `as` saturates for out-of-range floats, which is what we want here.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ns = (seconds * NANOS_PER_SECOND).round() as u64;
        let _ = self
            .monotonic_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(ns))
            });
        let _ = self
            .unix_bits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((f64::from_bits(b) + seconds).to_bits())
            });
        Ok(())
    }

    /// Sets the Unix time (monotonic time is unaffected, as when a wall clock is adjusted).
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `unix_seconds` is not finite.
    pub fn set_unix(&self, unix_seconds: f64) -> CoreResult<()> {
        check_finite(unix_seconds, "unix_time must be finite")?;
        self.unix_bits
            .store(unix_seconds.to_bits(), Ordering::Release);
        Ok(())
    }
}

impl Clock for ManualClock {
    #[inline]
    fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns.load(Ordering::Acquire)
    }

    #[inline]
    fn unix_seconds(&self) -> f64 {
        f64::from_bits(self.unix_bits.load(Ordering::Acquire))
    }
}

/// Whether two clock handles are the same clock (so their readings can be shared).
#[must_use]
pub fn same_clock(a: &Arc<dyn Clock>, b: &Arc<dyn Clock>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// Seconds since the Unix epoch, from the wall clock.
fn wall_seconds() -> f64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn check_finite(value: f64, message: &'static str) -> CoreResult<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_700_000_000.0).unwrap();
        assert_eq!(c.monotonic_ns(), 0);
        c.advance(1.5).unwrap();
        assert_eq!(c.monotonic_ns(), 1_500_000_000);
        assert!((c.unix_seconds() - 1_700_000_001.5).abs() < 1e-6);
        c.set_unix(5.0).unwrap();
        assert_eq!(c.monotonic_ns(), 1_500_000_000);
        assert!((c.unix_seconds() - 5.0).abs() < f64::EPSILON);
    }

    #[test]
    fn manual_clock_rejects_bad_input() {
        assert!(ManualClock::new(f64::NAN).is_err());
        let c = ManualClock::new(0.0).unwrap();
        assert!(c.advance(-1.0).is_err());
        assert!(c.advance(f64::INFINITY).is_err());
        assert!(c.set_unix(f64::NAN).is_err());
    }

    #[test]
    fn same_clock_compares_identity() {
        let a: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let b: Arc<dyn Clock> = Arc::new(SystemClock::new());
        assert!(same_clock(&a, &a.clone()));
        assert!(!same_clock(&a, &b));
    }

    #[test]
    fn host_clock_counts_from_its_origin() {
        let origin = HostClock::raw_ns();
        assert!(origin > 0);
        let c = HostClock::since(origin);
        let a = c.monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.monotonic_ns();
        assert!(b >= a + 2_000_000, "{a} {b}");
        assert_eq!(HostClock::since(u64::MAX).monotonic_ns(), 0);
    }

    #[test]
    fn system_clock_is_monotonic_and_near_now() {
        let c = SystemClock::new();
        let a = c.monotonic_ns();
        let b = c.monotonic_ns();
        assert!(b >= a);
        assert!(c.unix_seconds() > 1_600_000_000.0);
    }
}
