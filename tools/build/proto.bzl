"""offkey_proto_library: a .proto to C++ message and gRPC libraries with Debian's protoc.

Bazel's own proto rules would fetch protobuf and gRPC sources; offkey builds against the
system packages instead, so this macro runs /usr/bin/protoc with /usr/bin/grpc_cpp_plugin.

    offkey_proto_library(
        name = "key_service",
        srcs = ["key_service.proto"],
        proto_root = "proto",     # imports are written relative to this directory
        deps = [":common"],       # other offkey_proto_library targets
        grpc = True,              # also *.grpc.pb.{h,cc} and *_mock.grpc.pb.h
    )

makes `:key_service` (a cc_library that includes the gRPC stubs when grpc = True) and
`:key_service_proto_srcs` (the .proto files, for dependent macros).
"""

def offkey_proto_library(name, srcs, proto_root, deps = [], grpc = False, visibility = None):
    pkg = native.package_name()
    if not pkg.startswith(proto_root + "/") and pkg != proto_root:
        fail("package %s is not under proto_root %s" % (pkg, proto_root))
    rel = pkg[len(proto_root) + 1:] if pkg != proto_root else ""

    bases = [s[:-len(".proto")] for s in srcs]
    hdrs = [b + ".pb.h" for b in bases]
    ccs = [b + ".pb.cc" for b in bases]
    if grpc:
        hdrs += [b + ".grpc.pb.h" for b in bases] + [b + "_mock.grpc.pb.h" for b in bases]
        ccs += [b + ".grpc.pb.cc" for b in bases]

    native.filegroup(
        name = name + "_proto_srcs",
        srcs = srcs + [d + "_proto_srcs" for d in deps],
        visibility = visibility,
    )

    # $(RULEDIR) is bazel-out/.../bin/<pkg>; protoc writes <rel>/<file> under its out dir,
    # so the out dir is RULEDIR with <rel> taken off.
    up = "/".join([".."] * len(rel.split("/"))) if rel else "."
    out_root = "$(RULEDIR)/" + up
    cmd = [
        "/usr/bin/protoc",
        "--proto_path=" + proto_root,
        "--proto_path=$(GENDIR)/" + proto_root,
        "--proto_path=/usr/include",
        "--cpp_out=" + out_root,
    ]
    if grpc:
        cmd += [
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            "--grpc_out=generate_mock_code=true:" + out_root,
        ]
    cmd += ["%s/%s" % (pkg, s) for s in srcs]

    native.genrule(
        name = name + "_gen",
        srcs = [name + "_proto_srcs"],
        outs = hdrs + ccs,
        cmd = " ".join(cmd),
        message = "protoc " + " ".join(srcs),
    )

    lib_deps = ["@sys//:protobuf"] + deps
    if grpc:
        lib_deps.append("@sys//:grpc++")
    native.cc_library(
        name = name,
        srcs = ccs,
        hdrs = hdrs,
        strip_include_prefix = "/" + proto_root,
        deps = lib_deps,
        visibility = visibility,
    )
