//! tenantgate's core, in pure Rust: no Python, no I/O.
//!
//! * [`keys`]: the key format (`tg_<env>_<random><checksum>`), generation from the OS
//!   CSPRNG, parsing, keyed hashing (HMAC-SHA-256) and constant-time comparison.
//! * [`header`]: `Authorization` (bearer token) and `Host` parsing.
//! * [`verifier`]: the bounded, sharded cache that turns an `Authorization` header into a
//!   key record in one call, domain bindings, and the one call that also charges the
//!   record's rate limit.
//! * [`limiter`]: a GCRA rate limiter with shared, updatable quotas; the arithmetic runs
//!   over a [`BucketStore`]: heap maps, or fixed slots in memory the caller provides.
//! * `shard` (private): shard hashing and layout shared by the tables.
//! * [`clock`]: the time sources both read, so tests can drive time.
//! * [`error`]: the errors all of them return.

#![forbid(unsafe_code)]
#![warn(missing_docs, clippy::pedantic)]
#![allow(clippy::module_name_repetitions)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::cast_precision_loss,
        clippy::float_cmp
    )
)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
pub mod clock;
pub mod error;
pub mod header;
pub mod keys;
pub mod limiter;
mod shard;
pub mod verifier;

pub use clock::{same_clock, Clock, HostClock, ManualClock, SystemClock};
pub use error::{CoreError, CoreResult, KeyFormatError};
pub use header::{bearer_token, normalize_host, MAX_DOMAIN_LEN};
pub use keys::{
    check_key, checksum, checksum_string, constant_time_eq, generate_key, Digest, DisplayPrefix,
    Env, KeyHasher, ParsedKey,
};
pub use limiter::{
    shared, BucketHandle, BucketStore, Decision, HeapStore, Limiter, Quota, QuotaValue, SlotKey,
    SlotStore,
};
pub use verifier::{
    Acquired, Admission, BucketId, Charge, Check, Limit, Limited, Miss, Network, Record,
    RequestContext, Restriction, Verdict, Verifier, VerifierConfig, UNLIMITED,
};
