// LeakSanitizer settings for tests that load third-party PKCS#11 modules (linked into
// them only; inert without the sanitizers, whose runtimes alone call these hooks).
//
// SoftHSM2 2.6, opencryptoki 3.8 and tpm2-pkcs11 1.9 keep memory they never free (per
// object, per digest context, per parsed key): it is theirs, and offkey cannot free it.
// A leak is the module's when a frame of its stack is in the module's library. Those
// frames show only with the slow unwinder: the modules and libcrypto, which they call
// to allocate, are built without frame pointers, where the fast unwinder stops.
// Leaks whose stacks do not pass through a module are still reported.

extern "C" {

const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

const char* __lsan_default_suppressions() {
  return "leak:libsofthsm2.so\n"
         "leak:libopencryptoki.so\n"
         "leak:libpkcs11_sw.so\n"
         "leak:PKCS11_API.so\n"
         "leak:libtpm2_pkcs11.so\n";
}

}  // extern "C"
