#include "agent/identity.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/fd.h"

namespace wb::agent {
namespace {

constexpr size_t kMinEntropy = 32, kMaxEntropy = 512;

std::string Hex(std::string_view b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

int Nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool ValidHostname(const std::string& h) {
  if (h.empty() || h.size() > 64) return false;
  for (char c : h) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.')) return false;
  }
  return true;
}

}  // namespace

Result<Identity> ParseIdentity(std::string_view json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Fail("identity", std::string(json), "not a JSON object");
  Identity id;
  for (const char* k : {"id", "hostname", "entropy"}) {
    if (!j.contains(k) || !j[k].is_string()) return Fail("identity", k, "missing or not a string");
  }
  if (!j.contains("realtime_ns") || !j["realtime_ns"].is_number_integer())
    return Fail("identity", "realtime_ns", "missing or not an integer");
  id.sandbox_id = j["id"].get<std::string>();
  id.hostname = j["hostname"].get<std::string>();
  id.realtime_ns = j["realtime_ns"].get<int64_t>();
  if (!ValidHostname(id.hostname)) return Fail("identity", id.hostname, "invalid hostname");
  if (id.realtime_ns <= 0) return Fail("identity", "realtime_ns", "must be positive");
  const std::string hex = j["entropy"].get<std::string>();
  if (hex.size() % 2 || hex.size() / 2 < kMinEntropy || hex.size() / 2 > kMaxEntropy)
    return Fail("identity", "entropy", "expected 32 to 512 bytes in lower-case hex");
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = Nibble(hex[i]), lo = Nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return Fail("identity", "entropy", "not lower-case hex");
    id.entropy.push_back(static_cast<char>(hi << 4 | lo));
  }
  return id;
}

std::string IdentityToJson(const Identity& id) {
  nlohmann::json j = {{"id", id.sandbox_id},
                      {"hostname", id.hostname},
                      {"entropy", Hex(id.entropy)},
                      {"realtime_ns", id.realtime_ns}};
  return j.dump();
}

Result<void> ApplyIdentity(const Identity& id) {
  if (::sethostname(id.hostname.data(), id.hostname.size()) != 0)
    return Errno("sethostname", id.hostname);
  UniqueFd rnd(::open("/dev/random", O_WRONLY | O_CLOEXEC));
  if (!rnd) return Errno("open", "/dev/random");
  // struct rand_pool_info ends in a flexible array: the bytes follow it.
  std::vector<char> buf(sizeof(rand_pool_info) + id.entropy.size());
  auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
  info->entropy_count = static_cast<int>(id.entropy.size() * 8);
  info->buf_size = static_cast<int>(id.entropy.size());
  std::memcpy(info->buf, id.entropy.data(), id.entropy.size());
  if (::ioctl(rnd.get(), RNDADDENTROPY, info) != 0)
    return Errno("ioctl(RNDADDENTROPY)", "/dev/random");
  // Mixing into the input pool is not enough: the CRNG that getrandom() and
  // /dev/urandom read keeps the template's key until its next reseed (up to a
  // minute away). Force it now, before any command can read random bytes.
  if (::ioctl(rnd.get(), RNDRESEEDCRNG) != 0) return Errno("ioctl(RNDRESEEDCRNG)", "/dev/random");
  timespec ts{static_cast<time_t>(id.realtime_ns / 1000000000),
              static_cast<long>(id.realtime_ns % 1000000000)};
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) return Errno("clock_settime", "CLOCK_REALTIME");
  return Ok();
}

}  // namespace wb::agent
