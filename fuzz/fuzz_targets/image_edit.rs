//! libFuzzer target `image_edit`: the oracle of `tests/fuzz_inputs/checks.rs` (shared with the
//! property tests, so an input found here replays there) on each input; a failure panics.

#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz_inputs/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = checks::image_edit(data) {
        panic!("{why}");
    }
});
