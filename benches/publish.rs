//! Placeholder; replaced by the criterion suite.
fn main() {}
