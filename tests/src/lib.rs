//! End-to-end tests of squall over real loopback TCP live in `tests/`.
