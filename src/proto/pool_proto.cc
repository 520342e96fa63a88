#include "proto/pool_proto.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "proto/live_ops.h"

namespace wb::proto {

using nlohmann::json;

namespace {

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

Result<std::vector<std::string>> Strings(const json& j, const char* key, bool required) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return Bad(key, "missing");
    return out;
  }
  if (!it->is_array()) return Bad(key, "expected an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return Bad(key, "expected an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::string> OptString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Bad(key, "expected a string");
  return it->get<std::string>();
}

// A byte array: JSON numbers 0-255, or (for convenience) a string.
Result<std::string> Bytes(const json& v, const char* key) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) return Bad(key, "expected an array of bytes");
  std::string out;
  out.reserve(v.size());
  for (const auto& b : v) {
    if (!b.is_number_unsigned() || b.get<uint64_t>() > 255) return Bad(key, "expected bytes 0-255");
    out.push_back(static_cast<char>(b.get<uint64_t>()));
  }
  return out;
}

Result<uint64_t> U64(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return uint64_t{0};
  if (!it->is_number_unsigned()) return Bad(key, "expected a non-negative integer");
  return it->get<uint64_t>();
}

}  // namespace

void AppendByteNumbers(std::string& out, std::string_view data, bool first) {
  out.reserve(out.size() + data.size() * 4);
  for (unsigned char c : data) {
    if (!first) out += ',';
    first = false;
    if (c >= 100) out += static_cast<char>('0' + c / 100);
    if (c >= 10) out += static_cast<char>('0' + (c / 10) % 10);
    out += static_cast<char>('0' + c % 10);
  }
}

void AppendByteArray(std::string& out, std::string_view data) {
  out += '[';
  AppendByteNumbers(out, data, true);
  out += ']';
}

Result<PoolRequest> ParsePoolRequest(std::string_view text) {
  auto parsed = ParseJsonBounded(text, "request");
  if (!parsed.ok()) return Bad("request", parsed.error().detail);
  json j = std::move(*parsed);
  if (!j.is_object()) return Bad("request", "expected a JSON object");
  auto op = j.find("op");
  if (op == j.end() || !op->is_string()) return Bad("op", "missing or not a string");
  PoolRequest r;
  const std::string name = op->get<std::string>();
  if (name == "status") {
    r.op = Op::kStatus;
    auto f = j.find("format");
    if (f != j.end() && !f->is_null()) {
      if (!f->is_string() || (*f != "json" && *f != "prometheus")) {
        return Bad("format", "expected \"json\" or \"prometheus\"");
      }
      r.format = f->get<std::string>();
    }
    return r;
  }
  if (name == "stop") {
    r.op = Op::kStop;
    if (auto k = j.find("keep_sandboxes"); k != j.end() && !k->is_null()) {
      if (!k->is_boolean()) return Bad("keep_sandboxes", "expected a boolean");
      r.keep_sandboxes = k->get<bool>();
    }
    return r;
  }
  if (IsLiveOp(name)) {
    r.op = Op::kLive;  // the socket server parses it (proto/live_ops.h)
    r.live_op = name;
    return r;
  }
  if (name != "run") {
    return Bad("op",
               "unknown op '" + name +
                   "' (expected run, status, stop, sandbox_*, exec, attach, ps, signal or fs)");
  }
  r.op = Op::kRun;
  RunRequest& run = r.run;
  auto img = j.find("image");
  if (img != j.end() && !img->is_null()) {
    if (!img->is_string()) return Bad("image", "expected a string or null");
    if (img->get<std::string>().empty()) return Bad("image", "empty");
    run.image = img->get<std::string>();
  }
  run.cmd = WB_TRY(Strings(j, "cmd", true));
  if (run.cmd.empty()) return Bad("cmd", "empty command");
  run.env = WB_TRY(Strings(j, "env", false));
  for (const auto& kv : run.env) {
    if (kv.empty() || kv.front() == '=' || kv.find('=') == std::string::npos) {
      return Bad("env", "expected KEY=VALUE, got '" + kv + "'");
    }
  }
  run.workdir = WB_TRY(OptString(j, "workdir"));
  run.user = WB_TRY(OptString(j, "user"));
  auto in = j.find("stdin");
  if (in != j.end() && !in->is_null()) run.stdin_data = WB_TRY(Bytes(*in, "stdin"));
  run.timeout_ms = WB_TRY(U64(j, "timeout_ms"));
  // The daemon adds a margin and hands it to timers in nanoseconds (int64).
  if (run.timeout_ms > 1000000000000)
    return Bad("timeout_ms", "at most 1000000000000 (1e9 seconds)");
  for (auto [key, field] :
       {std::pair{"memory", &run.memory_bytes}, std::pair{"pids", &run.pids},
        std::pair{"output_cap", &run.output_cap}, std::pair{"nofile", &run.nofile}}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_number_unsigned() || it->get<uint64_t>() == 0)
      return Bad(key, "expected a positive integer");
    *field = it->get<uint64_t>();
  }
  // As `pool run --memory`: below this a sandbox cannot even start its
  // command, and the cgroup refuses a limit under what it already uses.
  if (run.memory_bytes && *run.memory_bytes < kMinMemory) {
    return Bad("memory", "at least " + std::to_string(kMinMemory) + " bytes (4 MiB)");
  }
  if (auto it = j.find("cpus"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || !(it->get<double>() > 0))
      return Bad("cpus", "expected a positive number");
    // As `warmbox run --cpus`; the quota is an integer number of microseconds.
    if (it->get<double>() > 1024) return Bad("cpus", "at most 1024");
    run.cpus = it->get<double>();
  }
  if (auto it = j.find("driver"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || (it->get<std::string>() != "ns" && it->get<std::string>() != "vm")) {
      return Bad("driver", "expected \"ns\" or \"vm\"");
    }
    run.driver = it->get<std::string>();
  }
  if (auto it = j.find("network"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Bad("network", "expected an object");
    RunRequest::Network n;
    for (const auto& [key, v] : it->items()) {
      if (key == "mode") {
        if (!v.is_string()) return Bad("network.mode", "expected \"none\" or \"egress\"");
        n.mode = v.get<std::string>();
      } else if (key == "allow_out" || key == "deny_out") {
        if (v.is_null()) continue;
        if (!v.is_array()) return Bad("network." + key, "expected an array of strings");
        for (const auto& e : v) {
          if (!e.is_string()) return Bad("network." + key, "expected an array of strings");
          (key == "allow_out" ? n.allow_out : n.deny_out).push_back(e.get<std::string>());
        }
      } else if (key == "ports") {
        return Bad("network.ports", "a run publishes no ports (use a live sandbox)");
      } else {
        return Bad("network." + key, "unknown field");
      }
    }
    run.network = std::move(n);
  }
  auto st = j.find("stream");
  if (st != j.end() && !st->is_null()) {
    if (!st->is_boolean()) return Bad("stream", "expected a boolean");
    run.stream = st->get<bool>();
  }
  return r;
}

std::string ToJson(const PoolRequest& r) {
  switch (r.op) {
    case Op::kStatus:
      return r.format.empty() || r.format == "json"
                 ? R"({"op":"status"})"
                 : R"({"op":"status","format":")" + r.format + "\"}";
    case Op::kStop:
      return r.keep_sandboxes ? R"({"op":"stop","keep_sandboxes":true})" : R"({"op":"stop"})";
    case Op::kLive:
      return json{{"op", r.live_op}}.dump();
    case Op::kRun:
      break;
  }
  const RunRequest& run = r.run;
  json j = {{"op", "run"}};
  j["image"] = run.image ? json(*run.image) : json(nullptr);
  j["cmd"] = run.cmd;
  if (!run.env.empty()) j["env"] = run.env;
  if (!run.workdir.empty()) j["workdir"] = run.workdir;
  if (!run.user.empty()) j["user"] = run.user;
  if (run.timeout_ms) j["timeout_ms"] = run.timeout_ms;
  if (run.stream) j["stream"] = true;
  if (run.memory_bytes) j["memory"] = *run.memory_bytes;
  if (run.pids) j["pids"] = *run.pids;
  if (run.output_cap) j["output_cap"] = *run.output_cap;
  if (run.nofile) j["nofile"] = *run.nofile;
  if (run.cpus) j["cpus"] = *run.cpus;
  if (run.driver) j["driver"] = *run.driver;
  if (run.network) {
    j["network"] = {{"mode", run.network->mode},
                    {"allow_out", run.network->allow_out},
                    {"deny_out", run.network->deny_out}};
  }
  std::string out = Dump(j);
  if (run.stdin_data) {
    // Bytes go as a number array, appended by hand (they may be large).
    out.pop_back();
    out += ",\"stdin\":";
    AppendByteArray(out, *run.stdin_data);
    out += '}';
  }
  return out;
}

std::string ToJson(const RunResponse& r) {
  std::string out = "{\"stdout\":";
  AppendByteArray(out, r.stdout_data);
  out += ",\"stderr\":";
  AppendByteArray(out, r.stderr_data);
  // Field order as upstream: stdout, stderr, exit_code, error, then ours.
  out += ",\"exit_code\":" + std::to_string(r.exit_code);
  out += ",\"error\":" + (r.error ? Dump(json(*r.error)) : std::string("null"));
  if (r.timed_out) out += ",\"timed_out\":true";
  if (r.stdout_truncated) out += ",\"stdout_truncated\":true";
  if (r.stderr_truncated) out += ",\"stderr_truncated\":true";
  if (r.oom_killed) out += ",\"oom_killed\":true";
  if (!r.sandbox.empty()) out += ",\"sandbox\":" + Dump(json(r.sandbox));
  if (r.error && !r.kind.empty()) out += ",\"kind\":" + Dump(json(r.kind));
  out += '}';
  return out;
}

RunResponse ErrorResponse(std::string message, std::string kind) {
  RunResponse r;
  r.exit_code = -1;
  r.error = std::move(message);
  r.kind = std::move(kind);
  return r;
}

std::string StreamChunkJson(bool is_stderr, std::string_view data) {
  std::string out =
      is_stderr ? "{\"stream\":\"stderr\",\"data\":" : "{\"stream\":\"stdout\",\"data\":";
  AppendByteArray(out, data);
  out += '}';
  return out;
}

Result<StreamFrame> ParseStreamFrame(std::string_view text) {
  auto parsed = ParseJsonBounded(text, "response");
  if (!parsed.ok())
    return Fail(ErrorCode::kInvalidArgument, "parse response", "", parsed.error().detail);
  json j = std::move(*parsed);
  if (!j.is_object()) return Fail("parse response", "", "invalid JSON");
  StreamFrame f{StreamFrame::kFinal, {}, {}};
  auto st = j.find("stream");
  if (st != j.end() && st->is_string()) {
    std::string which = st->get<std::string>();
    if (which != "stdout" && which != "stderr")
      return Fail("parse response", which, "unknown stream");
    f.kind = which == "stdout" ? StreamFrame::kStdout : StreamFrame::kStderr;
    auto d = j.find("data");
    if (d == j.end()) return Fail("parse response", "data", "missing");
    f.data = WB_TRY(Bytes(*d, "data"));
    return f;
  }
  RunResponse& r = f.final;
  if (auto it = j.find("stdout"); it != j.end() && !it->is_null())
    r.stdout_data = WB_TRY(Bytes(*it, "stdout"));
  if (auto it = j.find("stderr"); it != j.end() && !it->is_null())
    r.stderr_data = WB_TRY(Bytes(*it, "stderr"));
  auto code = j.find("exit_code");
  if (code == j.end() || !code->is_number_integer())
    return Fail("parse response", "exit_code", "missing");
  int64_t c = code->get<int64_t>();
  if (c < INT32_MIN || c > INT32_MAX) return Fail("parse response", "exit_code", "out of range");
  r.exit_code = static_cast<int>(c);
  if (auto it = j.find("error"); it != j.end() && it->is_string()) r.error = it->get<std::string>();
  // Extensions: true only when present and true; anything else reads as false.
  auto flag = [&](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_boolean() && it->get<bool>();
  };
  r.timed_out = flag("timed_out");
  r.stdout_truncated = flag("stdout_truncated");
  r.stderr_truncated = flag("stderr_truncated");
  r.oom_killed = flag("oom_killed");
  if (auto it = j.find("sandbox"); it != j.end() && it->is_string())
    r.sandbox = it->get<std::string>();
  if (auto it = j.find("kind"); it != j.end() && it->is_string()) r.kind = it->get<std::string>();
  return f;
}

std::string StatusJson(const std::vector<ImageStat>& images) {
  json arr = json::array();
  for (const auto& s : images) {
    double hit_rate = s.total_acquired
                          ? static_cast<double>(s.hits) / static_cast<double>(s.total_acquired)
                          : 0.0;
    arr.push_back({{"image", s.image},
                   {"idle", s.idle},
                   {"total_created", s.total_created},
                   {"total_acquired", s.total_acquired},
                   {"total_evicted", s.total_evicted},
                   {"active", s.active},
                   {"queued", s.queued},
                   {"max", s.max},
                   {"creating", s.creating},
                   {"hits", s.hits},
                   {"misses", s.misses},
                   {"hit_rate", hit_rate},
                   {"failed_creations", s.failed_creations},
                   {"rejected_busy", s.rejected_busy},
                   {"peak_active", s.peak_active},
                   {"driver", s.driver}});
    if (!s.template_state.empty()) {
      arr.back()["template"] = {{"state", s.template_state},
                                {"clones", s.clones},
                                {"clone_failures", s.clone_failures},
                                {"failures", s.template_failures},
                                {"last_error", s.template_error}};
    }
  }
  return Dump(json{{"images", arr}});
}

Result<std::vector<ImageStat>> ParseStatus(std::string_view text) {
  auto parsed = ParseJsonBounded(text, "status");
  json j = parsed.ok() ? std::move(*parsed) : json();
  if (!j.is_object() || !j.contains("images") || !j["images"].is_array()) {
    return Fail("parse status", "", "expected {\"images\":[...]}");
  }
  std::vector<ImageStat> out;
  for (const auto& e : j["images"]) {
    if (!e.is_object() || !e.contains("image") || !e["image"].is_string()) {
      return Fail("parse status", "", "image entry without a name");
    }
    ImageStat s;
    s.image = e["image"].get<std::string>();
    if (e.contains("driver") && e["driver"].is_string()) s.driver = e["driver"].get<std::string>();
    auto num = [&](const char* k) {
      return e.contains(k) && e[k].is_number_unsigned() ? e[k].get<uint64_t>() : 0;
    };
    s.idle = num("idle");
    s.active = num("active");
    s.queued = num("queued");
    s.max = num("max");
    s.creating = num("creating");
    s.total_created = num("total_created");
    s.total_acquired = num("total_acquired");
    s.total_evicted = num("total_evicted");
    s.hits = num("hits");
    s.misses = num("misses");
    s.failed_creations = num("failed_creations");
    s.rejected_busy = num("rejected_busy");
    s.peak_active = num("peak_active");
    if (e.contains("template") && e["template"].is_object()) {
      const auto& t = e["template"];
      s.template_state = t.value("state", "");
      s.clones = t.value("clones", uint64_t{0});
      s.clone_failures = t.value("clone_failures", uint64_t{0});
      s.template_failures = t.value("failures", uint64_t{0});
      s.template_error = t.value("last_error", "");
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string EncodePoolFrame(std::string_view json_text) {
  uint32_t n = static_cast<uint32_t>(json_text.size());
  std::string out;
  out.reserve(4 + json_text.size());
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>((n >> 16) & 0xff);
  out += static_cast<char>((n >> 24) & 0xff);
  out += json_text;
  return out;
}

Result<uint32_t> DecodePoolLength(const unsigned char hdr[4], uint32_t cap) {
  uint32_t n = uint32_t{hdr[0]} | (uint32_t{hdr[1]} << 8) | (uint32_t{hdr[2]} << 16) |
               (uint32_t{hdr[3]} << 24);
  if (n > cap) {
    return Fail(ErrorCode::kInvalidArgument, "frame", std::to_string(n) + " bytes",
                "exceeds the " + std::to_string(cap) + "-byte limit");
  }
  return n;
}

}  // namespace wb::proto
