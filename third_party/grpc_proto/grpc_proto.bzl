"""system_grpc_proto: C++ messages and gRPC stubs for a .proto of Debian's grpc-proto."""

_ROOT = "/usr/share/grpc-proto"

def system_grpc_proto(name, proto, testonly = False, compiled_in = None):
    """`proto` is the path under /usr/share/grpc-proto without ".proto".

    compiled_in: a library that already contains the generated code (Debian's
    libgrpc++_reflection has the reflection messages and stubs); then only the headers
    are used, since registering a descriptor twice aborts at startup.
    """
    outs = [proto + ext for ext in [".pb.cc", ".pb.h", ".grpc.pb.cc", ".grpc.pb.h"]]
    native.genrule(
        name = name + "_gen",
        srcs = [],
        outs = outs,
        cmd = " ".join([
            "/usr/bin/protoc",
            "--proto_path=" + _ROOT,
            "--cpp_out=$(RULEDIR)",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            "--grpc_out=$(RULEDIR)",
            "%s/%s.proto" % (_ROOT, proto),
        ]),
        message = "protoc " + proto + ".proto",
        testonly = testonly,
    )
    native.cc_library(
        name = name,
        srcs = [] if compiled_in else [outs[0], outs[2]],
        hdrs = [outs[1], outs[3]],
        includes = ["."],
        # Linking registers the descriptors (reflection needs them even when no code
        # calls into the library).
        alwayslink = True,
        testonly = testonly,
        deps = ["@sys//:grpc++"] + ([compiled_in] if compiled_in else []),
    )
