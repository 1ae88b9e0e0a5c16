#include "client/cli/output.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/names.h"
#include "google/protobuf/util/json_util.h"

namespace offkey::client::cli {

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
}

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    return "{}\n";
  }
  if (out.empty() || out.back() != '\n') out += "\n";
  return out;
}

std::string TimeText(int64_t unix_seconds) {
  if (unix_seconds == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(unix_seconds),
                          absl::UTCTimeZone());
}

std::string Relative(int64_t unix_seconds, absl::Time now) {
  const int64_t delta = unix_seconds - absl::ToUnixSeconds(now);
  // Coarse on purpose: at most two units.
  auto coarse = [](int64_t s) {
    std::string text = DurationText(s);
    size_t units = 0, cut = text.size();
    for (size_t i = 0; i < text.size(); ++i) {
      if (std::isalpha(static_cast<unsigned char>(text[i])) && ++units == 2) {
        cut = i + 1;
        break;
      }
    }
    return text.substr(0, cut);
  };
  if (delta >= 0) return absl::StrCat("in ", coarse(delta));
  return absl::StrCat(coarse(-delta), " ago");
}

std::string LabelsText(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.empty()) return "-";
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

namespace {

std::string CertificateCell(const offkey::v1::KeyInfo& key, absl::Time now) {
  if (!key.has_certificate() || key.certificate().not_after() == 0) return "-";
  const int64_t not_after = key.certificate().not_after();
  if (not_after < absl::ToUnixSeconds(now)) {
    return absl::StrCat("EXPIRED ", TimeText(not_after).substr(0, 10));
  }
  return absl::StrCat("expires ", TimeText(not_after).substr(0, 10));
}

std::string StateCell(const offkey::v1::KeyInfo& key, absl::Time now) {
  if (key.state() != offkey::v1::PENDING_DESTRUCTION) return StateName(key.state());
  return absl::StrCat("pending-destruction (", Relative(key.destroy_time(), now), ")");
}

}  // namespace

void PrintKeyTable(const std::vector<const offkey::v1::KeyInfo*>& keys, absl::Time now,
                   std::ostream& out) {
  Table table(
      {"NAME", "ALGORITHM", "USAGE", "STATE", "CREATED", "CERTIFICATE", "LABELS"});
  for (const offkey::v1::KeyInfo* key : keys) {
    table.Add({key->name(), AlgorithmName(key->algorithm()), UsageName(key->usage()),
               StateCell(*key, now), TimeText(key->create_time()).substr(0, 10),
               CertificateCell(*key, now), LabelsText(key->labels())});
  }
  table.Print(out);
}

void PrintKeyDetails(const offkey::v1::KeyDetails& details, absl::Time now,
                     std::ostream& out) {
  const offkey::v1::KeyInfo& key = details.info();
  std::vector<std::string> schemes;
  for (int s : key.schemes()) {
    schemes.push_back(SchemeName(static_cast<offkey::v1::SignatureScheme>(s)));
  }
  Table table({"name:", key.name()});
  table.Add({"key id:", Hex(key.key_id())});
  table.Add({"ski:", Hex(key.ski())});
  table.Add({"algorithm:", AlgorithmName(key.algorithm())});
  table.Add({"usage:", UsageName(key.usage())});
  table.Add({"state:", StateName(key.state())});
  if (key.state() == offkey::v1::PENDING_DESTRUCTION) {
    table.Add({"destroy time:", absl::StrCat(TimeText(key.destroy_time()), " (",
                                             Relative(key.destroy_time(), now), ")")});
  }
  table.Add({"created:", TimeText(key.create_time())});
  table.Add({"labels:", LabelsText(key.labels())});
  table.Add({"schemes:", absl::StrJoin(schemes, ", ")});
  if (key.has_certificate() && key.certificate().not_after() != 0) {
    const offkey::v1::CertificateSummary& cert = key.certificate();
    std::vector<std::string> sans;
    for (const std::string& n : cert.dns_names()) sans.push_back("DNS:" + n);
    for (const std::string& n : cert.ip_addresses()) sans.push_back("IP:" + n);
    for (const std::string& n : cert.uris()) sans.push_back("URI:" + n);
    const bool expired = cert.not_after() < absl::ToUnixSeconds(now);
    table.Add({"certificate:", cert.subject()});
    table.Add({"  issuer:", cert.issuer()});
    table.Add({"  SANs:", sans.empty() ? "-" : absl::StrJoin(sans, ", ")});
    table.Add({"  not before:", TimeText(cert.not_before())});
    table.Add({"  not after:", absl::StrCat(TimeText(cert.not_after()), " (",
                                            expired ? "EXPIRED " : "expires ",
                                            Relative(cert.not_after(), now), ")")});
    table.Add({"  serial:", cert.serial_hex()});
    table.Add({"  sha256:", Hex(cert.sha256())});
    table.Add({"  chain:",
               absl::StrCat(details.certificate_chain_size(),
                            details.certificate_chain_size() == 1 ? " certificate"
                                                                  : " certificates")});
  } else {
    table.Add({"certificate:", "none (attach one with `offkeyctl attach-cert`)"});
  }
  table.Print(out);
  out << details.public_key_pem();
}

void PrintTicketKeySetTable(const std::vector<const offkey::v1::TicketKeySetInfo*>& sets,
                            absl::Time now, std::ostream& out) {
  Table table({"NAME", "ROTATION", "CREATED", "EPOCH", "NEXT-ROTATION"});
  for (const offkey::v1::TicketKeySetInfo* set : sets) {
    table.Add({set->name(), DurationText(set->rotation_period_seconds()),
               TimeText(set->create_time()).substr(0, 10),
               absl::StrCat(set->current_epoch()),
               absl::StrCat(TimeText(set->next_rotation_time()), " (",
                            Relative(set->next_rotation_time(), now), ")")});
  }
  table.Print(out);
}

void PrintTicketKeySetDetails(const offkey::v1::TicketKeySetInfo& set, absl::Time now,
                              std::ostream& out) {
  Table table({"name:", set.name()});
  table.Add({"rotation period:", DurationText(set.rotation_period_seconds())});
  table.Add({"created:", TimeText(set.create_time())});
  table.Add({"current epoch:", absl::StrCat(set.current_epoch())});
  table.Add(
      {"next rotation:", absl::StrCat(TimeText(set.next_rotation_time()), " (",
                                      Relative(set.next_rotation_time(), now), ")")});
  table.Add({"secret:",
             "in the HSM, never extractable; terminators get derived keys "
             "with `offkeyctl ticket-keys`"});
  table.Print(out);
}

}  // namespace offkey::client::cli
