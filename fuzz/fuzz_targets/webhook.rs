//! The webhook body parser takes any bytes without panicking.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = laojun::alert::parse(data);
});
