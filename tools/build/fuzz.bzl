"""offkey_fuzz_test: a libFuzzer target plus a test that replays its seed corpus.

    offkey_fuzz_test(
        name = "key_reference_fuzz",
        srcs = ["key_reference_fuzz.cc"],       # defines LLVMFuzzerTestOneInput
        deps = [":key_reference"],
        corpus = glob(["testdata/fuzz/key_reference/*"]),
    )

makes
  `:key_reference_fuzz_bin` a cc_binary. Under `--config=fuzz` (clang-14, .bazelrc) it is
      linked with libFuzzer, ASan and UBSan: tools/fuzz.sh runs it. In the ordinary build
      it is linked with the replay driver instead, so it always builds.
  `:key_reference_fuzz` a cc_test that feeds every corpus file to LLVMFuzzerTestOneInput
      once through the replay driver (//tools/build:fuzz_replay_main). It runs in the
      ordinary gcc build, so every target and every regression input is exercised by
      the normal test suite without clang. It fails if the corpus is empty.
"""

def offkey_fuzz_test(name, srcs, corpus, deps = [], copts = [], tags = []):
    if not corpus:
        fail("offkey_fuzz_test %s: the seed corpus is empty" % name)
    native.cc_library(
        name = name + "_lib",
        testonly = True,
        srcs = srcs,
        copts = copts,
        deps = deps,
        # The fuzz entry point is only reached through the linker.
        alwayslink = True,
    )
    native.cc_binary(
        name = name + "_bin",
        testonly = True,
        deps = [":" + name + "_lib"] + select({
            "//tools/build:fuzzing": [],
            "//conditions:default": ["//tools/build:fuzz_replay_main"],
        }),
        linkopts = select({
            "//tools/build:fuzzing": ["-fsanitize=fuzzer,address,undefined"],
            "//conditions:default": [],
        }),
        tags = tags + ["fuzz_target"],
    )
    native.filegroup(
        name = name + "_corpus",
        testonly = True,
        srcs = corpus,
        tags = ["fuzz_corpus"],
    )
    native.cc_test(
        name = name,
        size = "small",
        deps = [
            ":" + name + "_lib",
            "//tools/build:fuzz_replay_main",
        ],
        data = [":" + name + "_corpus"],
        args = ["$(locations :%s_corpus)" % name],
        tags = tags,
    )
