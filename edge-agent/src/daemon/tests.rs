//! Unit tests of the daemon: each test runs observe → plan → apply passes of a real
//! [`super::Agent`] on the fakes (runtime, images, state store, host, clock) and checks
//! the runtime calls, the records, the host calls and the status it publishes.

mod clock_steps;
mod depends;
mod disk_full;
mod failures;
mod fixture;
mod images_gc;
mod lifecycle;
mod ref_files;
mod rollback;
mod sources_report;
