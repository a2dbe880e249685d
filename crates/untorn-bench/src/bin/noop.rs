//! A Rust program that does nothing: what starting any Rust process costs here (the floor of
//! `untorn --version` in the `spawn` benchmark).

fn main() {}
