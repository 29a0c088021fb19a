//! Fuzz target: see `inputs::rules`.
#![no_main]

#[path = "../inputs.rs"]
mod inputs;

libfuzzer_sys::fuzz_target!(init: inputs::tolerate_parser_panics(), |data: &[u8]| inputs::rules(data));
