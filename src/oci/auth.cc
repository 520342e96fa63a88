#include "oci/auth.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/strings.h"

namespace wb::oci {
namespace {

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The host part of a config.json key: "https://index.docker.io/v1/" -> "index.docker.io".
std::string KeyHost(std::string_view key) {
  if (size_t p = key.find("://"); p != std::string_view::npos) key = key.substr(p + 3);
  return std::string(key.substr(0, key.find('/')));
}

}  // namespace

Result<Challenge> ParseChallenge(std::string_view header) {
  std::string_view h = Trim(header);
  size_t sp = h.find(' ');
  Challenge c;
  c.scheme = AsciiLower(h.substr(0, sp));
  if (c.scheme != "bearer" && c.scheme != "basic") {
    return Fail("WWW-Authenticate", std::string(header),
                "unsupported scheme (expected Bearer or Basic)");
  }
  std::string_view rest = sp == std::string_view::npos ? std::string_view() : h.substr(sp + 1);
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && (rest[i] == ' ' || rest[i] == ',')) ++i;
    if (i >= rest.size()) break;
    size_t eq = rest.find('=', i);
    if (eq == std::string_view::npos)
      return Fail("WWW-Authenticate", std::string(header), "expected key=value");
    std::string key = AsciiLower(Trim(rest.substr(i, eq - i)));
    i = eq + 1;
    std::string value;
    if (i < rest.size() && rest[i] == '"') {
      ++i;
      bool closed = false;
      while (i < rest.size()) {
        char ch = rest[i++];
        if (ch == '\\' && i < rest.size()) {
          value += rest[i++];
        } else if (ch == '"') {
          closed = true;
          break;
        } else {
          value += ch;
        }
      }
      if (!closed)
        return Fail("WWW-Authenticate", std::string(header), "unterminated quoted value");
    } else {
      size_t end = rest.find(',', i);
      if (end == std::string_view::npos) end = rest.size();
      value = std::string(Trim(rest.substr(i, end - i)));
      i = end;
    }
    c.params[key] = value;
  }
  if (c.scheme == "bearer" && c.params["realm"].empty()) {
    return Fail("WWW-Authenticate", std::string(header), "Bearer challenge without realm");
  }
  return c;
}

Result<std::string> TokenUrl(const Challenge& c, std::string_view repository) {
  auto realm = c.params.find("realm");
  if (realm == c.params.end() || realm->second.empty()) return Fail("token url", "", "no realm");
  const std::string& r = realm->second;
  if (!StartsWith(r, "https://") && !StartsWith(r, "http://")) {
    return Fail("token url", r, "realm must be an http(s) URL");
  }
  std::string url = r + (r.find('?') == std::string::npos ? "?" : "&");
  bool first = true;
  auto add = [&](const char* k, const std::string& v) {
    url += (first ? "" : "&") + std::string(k) + "=" + UrlEscape(v);
    first = false;
  };
  if (auto s = c.params.find("service"); s != c.params.end()) add("service", s->second);
  auto scope = c.params.find("scope");
  add("scope", scope != c.params.end() && !scope->second.empty()
                   ? scope->second
                   : "repository:" + std::string(repository) + ":pull");
  return url;
}

Result<std::string> ParseTokenResponse(std::string_view body) {
  auto parsed = ParseJsonBounded(body, "token response");
  if (!parsed.ok()) return parsed.error().Wrap("token response");
  auto& j = *parsed;
  if (!j.is_object()) return Fail("token response", "", "not a JSON object");
  for (const char* k : {"token", "access_token"}) {
    if (auto it = j.find(k); it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>();
    }
  }
  return Fail("token response", "", "no token or access_token");
}

std::string Credentials::BasicHeader() const {
  return "Basic " + Base64Encode(username + ":" + password);
}

Result<std::optional<Credentials>> CredentialsFromDockerConfig(std::string_view json_text,
                                                               std::string_view registry) {
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Fail("docker config", "", "not a JSON object");
  auto auths = j.find("auths");
  if (auths == j.end() || !auths->is_object()) return std::optional<Credentials>();
  std::string want(registry);
  bool hub = want == "docker.io" || want == "index.docker.io" || want == "registry-1.docker.io";
  for (const auto& [key, val] : auths->items()) {
    std::string host = KeyHost(key);
    bool match = host == want || (hub && (host == "docker.io" || host == "index.docker.io" ||
                                          host == "registry-1.docker.io"));
    if (!match || !val.is_object()) continue;
    Credentials c;
    if (auto a = val.find("auth");
        a != val.end() && a->is_string() && !a->get<std::string>().empty()) {
      std::string dec = WB_TRY(Base64Decode(a->get<std::string>()));
      size_t colon = dec.find(':');
      if (colon == std::string::npos)
        return Fail("docker config", key, "auth is not base64 of user:password");
      c.username = dec.substr(0, colon);
      c.password = dec.substr(colon + 1);
      return std::optional<Credentials>(c);
    }
    if (val.contains("username") && val["username"].is_string() && val.contains("password") &&
        val["password"].is_string()) {
      c.username = val["username"];
      c.password = val["password"];
      return std::optional<Credentials>(c);
    }
  }
  return std::optional<Credentials>();
}

std::string Base64Encode(std::string_view in) {
  std::string out;
  size_t i = 0;
  while (i + 2 < in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
    i += 3;
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    const char* p = std::strchr(kB64, c);
    if (!p || c == '\0') return Fail("base64", std::string(in.substr(0, 16)), "invalid character");
    acc = (acc << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::string UrlEscape(std::string_view in) {
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace wb::oci
