// What Prometheus sees of a real offkeyd over SoftHSM2: a bounded set of series on a
// fresh server.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

// Sample lines of a Prometheus text exposition ("name{labels} value"), keyed by
// everything before the value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(space != line.npos && absl::SimpleAtod(line.substr(space + 1), &value))
        << line;
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

class MonitoringTest : public OffkeydTest {
 protected:
  grpc::Status SignOnce(const std::string& key) {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name(key);
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
    request.set_message(Tls13Input());
    offkey::v1::SignResponse response;
    return Stub(kTerminator)->Sign(Context().get(), request, &response);
  }

  std::map<std::string, double> Scrape() {
    std::pair<int, std::string> scraped = HttpGet("/metrics");
    EXPECT_EQ(scraped.first, 200) << scraped.second;
    return Samples(scraped.second);
  }
};

// Series are made for what happens, not for every operation, scheme and status code
// that could: a fresh offkeyd exposes a few hundred samples at most.
TEST_F(MonitoringTest, FreshOffkeydExposesFewSeries) {
  const size_t fresh = Scrape().size();
  std::printf("samples on a fresh offkeyd: %zu\n", fresh);
  EXPECT_LT(fresh, 300u);
}

}  // namespace
}  // namespace offkey::tests
