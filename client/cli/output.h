// offkeyctl's output: aligned tables and key details for people, JSON for scripts.
#ifndef OFFKEY_CLIENT_CLI_OUTPUT_H_
#define OFFKEY_CLIENT_CLI_OUTPUT_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "offkey/v1/common.pb.h"
#include "offkey/v1/key_admin.pb.h"

namespace offkey::client::cli {

enum class OutputFormat { kTable, kJson, kName };

// Columns padded to their widest cell; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// The proto3 JSON mapping of `message` (field names as in the .proto, every field
// printed, bytes as base64, enums by name), pretty-printed, with a trailing newline.
std::string Json(const google::protobuf::Message& message);

// RFC 3339 in UTC ("2026-11-22T10:00:00Z"); "-" for 0.
std::string TimeText(int64_t unix_seconds);
// "in 6d23h" / "3d ago", relative to `now`.
std::string Relative(int64_t unix_seconds, absl::Time now);

// "env=prod,team=edge" sorted by key; "-" when empty.
std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels);

// One row per key: NAME ALGORITHM USAGE STATE CREATED CERTIFICATE LABELS.
void PrintKeyTable(const std::vector<const offkey::v1::KeyInfo*>& keys, absl::Time now,
                   std::ostream& out);

// Everything about one key, as "field: value" lines, then the public key PEM.
void PrintKeyDetails(const offkey::v1::KeyDetails& key, absl::Time now,
                     std::ostream& out);

// One row per ticket-key set: NAME ROTATION CREATED EPOCH NEXT-ROTATION.
void PrintTicketKeySetTable(const std::vector<const offkey::v1::TicketKeySetInfo*>& sets,
                            absl::Time now, std::ostream& out);

// One ticket-key set as "field: value" lines.
void PrintTicketKeySetDetails(const offkey::v1::TicketKeySetInfo& set, absl::Time now,
                              std::ostream& out);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_OUTPUT_H_
