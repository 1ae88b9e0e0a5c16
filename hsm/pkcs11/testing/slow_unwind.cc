// AddressSanitizer's slow unwinder on every allocation, so that a leak allocated by a
// PKCS#11 module through libcrypto still shows the module's frame (see
// module_leaks.cc). It makes allocation-heavy code many times slower (an offkeyd
// under load missed its deadlines), so only the tests that load a module in process,
// leak through libcrypto and have no tight deadlines link it.

extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
