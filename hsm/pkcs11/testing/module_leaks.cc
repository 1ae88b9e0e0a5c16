// LeakSanitizer suppressions for the third-party PKCS#11 modules (linked into every
// binary under --config=asan; inert otherwise, since only the sanitizer runtimes call
// this hook).
//
// SoftHSM2 2.6, opencryptoki 3.8 and tpm2-pkcs11 1.9 keep memory they never free (per
// object, per digest context, per parsed key): it is theirs, and offkey cannot free it.
// A leak is the module's when a frame of its stack is in the module's library. Leaks
// whose stacks do not pass through a module are still reported.
//
// With the fast unwinder a stack shows the module only when the module itself called
// the allocator: the modules and libcrypto, through which they also allocate, are built
// without frame pointers, where the fast unwinder stops. Tests that need those leaks
// attributed too link :slow_unwind.

extern "C" {

const char* __lsan_default_suppressions() {
  return "leak:libsofthsm2.so\n"
         "leak:libopencryptoki.so\n"
         "leak:libpkcs11_sw.so\n"
         "leak:PKCS11_API.so\n"
         "leak:libtpm2_pkcs11.so\n";
}

}  // extern "C"
