// offkeyctl: the operator CLI for offkeyd's admin plane. See app.h.
#include <stdlib.h>
#include <unistd.h>

#include <iostream>

#include "base/build_info.h"
#include "base/build_stamp.h"
#include "client/cli/app.h"

int main(int argc, char** argv) {
  offkey::SetBuildInfo(offkey::StampedBuildInfo());
  // gRPC's own log lines (handshake failures and the like) are for gRPC developers;
  // offkeyctl explains failures itself. GRPC_VERBOSITY set by the user still wins.
  setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);
  return offkey::client::cli::RunOffkeyctl(argc, argv, std::cin, std::cout, std::cerr,
                                           isatty(STDIN_FILENO) != 0,
                                           offkey::client::cli::ProcessEnv());
}
