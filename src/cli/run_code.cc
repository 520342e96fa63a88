// warmbox run-code ID [--language L] [--context C] [--timeout S] [--env K=V] -- CODE
// (or the code from stdin): the sandbox's code interpreter (docs/services.md,
// "Code"), through the daemon's sandbox_code op. Prints stdout and stderr as
// they stream, then each result's text; the MIME types a result carried
// besides text are named on stderr. Exit: 0, 1 when the code raised (its
// traceback on stderr), 125 for warmbox's own errors.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/strings.h"
#include "cli/verbs.h"
#include "daemon/client.h"
#include "daemon/live_proto.h"
#include "daemon/server.h"

namespace wb::cli {

namespace {

bool EndsWithNl(const std::string& s) { return !s.empty() && s.back() == '\n'; }

std::string JoinWith(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

void Print(FILE* f, const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), f);
  std::fflush(f);
}

// One NDJSON line of the interpreter; sets *raised on an error.
void Show(const nlohmann::json& j, bool* raised) {
  const std::string type = j.value("type", "");
  auto text = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (type == "stdout") {
    Print(stdout, text("text"));
  } else if (type == "stderr") {
    Print(stderr, text("text"));
  } else if (type == "result") {
    std::string t = text("text");
    if (!t.empty()) Print(stdout, t + (EndsWithNl(t) ? "" : "\n"));
    std::vector<std::string> others;
    for (const auto& [k, v] : j.items()) {
      if (k == "type" || k == "text" || k == "is_main_result" || k == "extra" || v.is_null())
        continue;
      others.push_back(k);
    }
    if (!others.empty()) Print(stderr, "[result also as: " + JoinWith(others, ", ") + "]\n");
  } else if (type == "error") {
    *raised = true;
    std::string tb = text("traceback");
    if (tb.empty()) tb = text("name") + ": " + text("value");
    Print(stderr, tb + (EndsWithNl(tb) ? "" : "\n"));
  }
  // number_of_executions, keepalive, end_of_execution: nothing to show.
}

}  // namespace

Action AddRunCode(CLI::App& app) {
  auto socket = std::make_shared<std::string>();
  auto id = std::make_shared<std::string>();
  auto language = std::make_shared<std::string>();
  auto context = std::make_shared<std::string>();
  auto timeout = std::make_shared<double>(0);
  auto env = std::make_shared<std::vector<std::string>>();
  auto code = std::make_shared<std::vector<std::string>>();
  CLI::App* rc = app.add_subcommand(
      "run-code", "run code in a live sandbox's code interpreter (docs/services.md)");
  rc->add_option("--socket", *socket, "daemon socket");
  rc->add_option("--language", *language, "python (the default), javascript, bash ...");
  rc->add_option("--context", *context, "a context id (not with --language)");
  rc->add_option("--timeout", *timeout, "seconds; the execution is interrupted then");
  rc->add_option("-e,--env", *env, "K=V for this execution only (repeatable)");
  rc->add_option("id", *id, "sandbox id")->required();
  rc->add_option("code", *code, "the code (default: read from stdin)");
  return [=](const GlobalOptions&) -> int {
    daemon::LiveRequest r;
    r.op = daemon::LiveOp::kCode;
    r.id = *id;
    if (code->empty()) {
      auto in = ReadAll(STDIN_FILENO);
      if (!in.ok()) return ReportError(in.error());
      r.code.code = *in;
    } else {
      r.code.code = JoinWith(*code, " ");
    }
    r.code.language = *language;
    r.code.context_id = *context;
    if (!language->empty() && !context->empty()) {
      return ReportError(Fail(ErrorCode::kInvalidArgument, "run-code", "--context",
                              "give --language or --context, not both"));
    }
    if (*timeout < 0 || *timeout > 604800) {
      return ReportError(Fail(ErrorCode::kInvalidArgument, "run-code", "--timeout",
                              "expected seconds, 0 to 604800"));
    }
    r.code.timeout_ms = static_cast<uint64_t>(std::llround(*timeout * 1000));
    for (const auto& kv : *env) {
      size_t eq = kv.find('=');
      if (eq == 0 || eq == std::string::npos) {
        return ReportError(Fail(ErrorCode::kInvalidArgument, "run-code", "--env",
                                "expected K=V, got '" + kv + "'"));
      }
      r.code.env_vars[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    daemon::PoolClient client(socket->empty() ? daemon::DefaultSocketPath() : *socket);
    std::optional<Error> failed;
    bool raised = false;
    auto s = client.Stream(daemon::ToJson(r), [&](const std::string& body) {
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        failed = Fail("run-code", *id, "bad reply from the daemon: " + body);
        return false;
      }
      if (j.contains("ok")) {
        if (!j.value("ok", false)) failed = Fail("run-code", *id, j.value("error", body));
        return false;
      }
      if (auto it = j.find("line"); it != j.end() && it->is_string()) {
        auto line = nlohmann::json::parse(it->get<std::string>(), nullptr, false);
        if (line.is_object()) Show(line, &raised);
      }
      return true;
    });
    if (failed) return ReportError(*failed);
    if (!s.ok()) return ReportError(s.error());
    return raised ? 1 : 0;
  };
}

}  // namespace wb::cli
