#include "mcp/tools.h"

#include <algorithm>
#include <initializer_list>
#include <set>

#include "daemon/http_api.h"

namespace wb::mcp {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

constexpr uint64_t kDefaultRunTimeoutS = 60;
constexpr uint64_t kMaxRunTimeoutS = 3600;

json Schema(json properties, std::initializer_list<const char*> required) {
  json s = {{"type", "object"}, {"properties", std::move(properties)}};
  if (required.size()) s["required"] = json::array();
  for (const char* r : required) s["required"].push_back(r);
  s["additionalProperties"] = false;
  return s;
}

json Tool(const char* name, const char* title, const char* description, json input_schema,
          bool read_only, bool destructive) {
  return {{"name", name},
          {"title", title},
          {"description", description},
          {"inputSchema", std::move(input_schema)},
          {"annotations",
           {{"title", title},
            {"readOnlyHint", read_only},
            {"destructiveHint", destructive},
            {"openWorldHint", false}}}};
}

const json kSandboxId = {
    {"type", "string"},
    {"description", "The id of a sandbox from create_sandbox (or list_sandboxes): 32 hex digits."}};
const json kTimeout = {{"type", "integer"},
                       {"minimum", 1},
                       {"maximum", kMaxRunTimeoutS},
                       {"description",
                        "Seconds before the program is killed (default 60); a timed-out run "
                        "reports exit code 137 and timed_out true."}};
const json kKeep = {{"type", "boolean"},
                    {"description",
                     "Only without sandbox_id: keep the fresh sandbox instead of destroying it "
                     "after the run; its id is in the result (default false)."}};
const json kEnv = {{"type", "object"},
                   {"additionalProperties", {{"type", "string"}}},
                   {"description", "Environment variables, name to value."}};
const json kPath = {
    {"type", "string"},
    {"description", "An absolute path inside the sandbox, e.g. /home/user/data.csv or /tmp/x."}};

json BuildToolList() {
  json tools = json::array();
  tools.push_back(Tool(
      "run_code", "Run code",
      "Run a snippet of Python, JavaScript (Node.js) or Bash in an isolated Linux sandbox and "
      "return its stdout, stderr and exit code. Without sandbox_id a fresh sandbox of the `base` "
      "image (Debian with python3 and bash) is created for this one run and destroyed after it, "
      "so nothing persists between calls; to keep files, installed packages or state across "
      "calls, call create_sandbox first and pass its id. The code runs as a normal user in the "
      "sandbox's home directory. A non-zero exit code is a normal result, not a tool error. "
      "Images the code saves can be fetched with read_file.",
      Schema(
          {{"language",
            {{"type", "string"},
             {"enum", {"python", "javascript", "bash"}},
             {"description",
              "python runs with python3, javascript with node, bash with bash. The base image "
              "has python3 and bash but not node."}}},
           {"code", {{"type", "string"}, {"description", "The program text, run as one script."}}},
           {"sandbox_id", kSandboxId},
           {"keep_sandbox", kKeep},
           {"timeout_seconds", kTimeout}},
          {"language", "code"}),
      false, false));
  tools.push_back(Tool(
      "run_command", "Run a shell command",
      "Run a shell command line (with /bin/sh -c, so pipes, redirections and && work) in an "
      "isolated Linux sandbox and return its stdout, stderr and exit code. Without sandbox_id a "
      "fresh sandbox of the `base` image is created for this one command and destroyed after "
      "it; pass the id of a sandbox from create_sandbox to work in one place across calls "
      "(e.g. install packages, then use them). A non-zero exit code is a normal result.",
      Schema({{"command",
               {{"type", "string"},
                {"description", "The command line, e.g. \"ls -la /tmp && uname -a\"."}}},
              {"sandbox_id", kSandboxId},
              {"cwd",
               {{"type", "string"},
                {"description", "Absolute working directory (default: the sandbox's home)."}}},
              {"env", kEnv},
              {"keep_sandbox", kKeep},
              {"timeout_seconds", kTimeout}},
             {"command"}),
      false, false));
  tools.push_back(
      Tool("create_sandbox", "Create a sandbox",
           "Create a persistent isolated Linux sandbox and return its id. Files, processes and "
           "installed packages stay in it across run_code, run_command and file tool calls that "
           "pass this id, until kill_sandbox or until its timeout (default 300 seconds) expires. "
           "Kill it when done.",
           Schema({{"image",
                    {{"type", "string"},
                     {"description",
                      "The image or template (default `base`: Debian with python3, bash and a user "
                      "account). Any image in the warmbox store works, e.g. python:3.12-slim if "
                      "pulled."}}},
                   {"timeout_seconds",
                    {{"type", "integer"},
                     {"minimum", 1},
                     {"description",
                      "Seconds the sandbox lives before it is destroyed (default 300; the daemon "
                      "caps it)."}}},
                   {"env", kEnv}},
                  {}),
           false, false));
  tools.push_back(Tool("kill_sandbox", "Kill a sandbox",
                       "Destroy a sandbox and everything in it (its processes and files).",
                       Schema({{"sandbox_id", kSandboxId}}, {"sandbox_id"}), false, true));
  tools.push_back(Tool("list_sandboxes", "List sandboxes",
                       "List the live sandboxes: id, image, state, creation and expiry times "
                       "(milliseconds since the epoch) and metadata.",
                       Schema(json::object(), {}), true, false));
  tools.push_back(Tool(
      "read_file", "Read a file",
      "Read a file from a sandbox. Text comes back as text; a PNG, JPEG, GIF or WebP image as "
      "an image you can see; other binary files as a base64 resource. At most 8 MiB.",
      Schema({{"sandbox_id", kSandboxId}, {"path", kPath}}, {"sandbox_id", "path"}), true, false));
  tools.push_back(Tool(
      "write_file", "Write a file",
      "Create or overwrite a file in a sandbox, as the sandbox's user. The parent directory "
      "must exist (create it with run_command mkdir -p).",
      Schema({{"sandbox_id", kSandboxId},
              {"path", kPath},
              {"content", {{"type", "string"}, {"description", "The file's content."}}},
              {"encoding",
               {{"type", "string"},
                {"enum", {"utf8", "base64"}},
                {"description", "How content is written: utf8 text (default) or base64 bytes."}}}},
             {"sandbox_id", "path", "content"}),
      false, true));
  tools.push_back(Tool(
      "list_files", "List files",
      "List a directory of a sandbox: each entry's path, type (file, dir, symlink) and size.",
      Schema({{"sandbox_id", kSandboxId},
              {"path", kPath},
              {"depth",
               {{"type", "integer"},
                {"minimum", 1},
                {"maximum", 10},
                {"description", "How many levels to descend (default 1: the directory only)."}}}},
             {"sandbox_id", "path"}),
      true, false));
  return tools;
}

// --- arguments ------------------------------------------------------------------

// A tool's arguments, checked against what its schema allows. Every error
// names the argument and what was expected (the model corrects the call).
class Args {
 public:
  Args(const json& j, const char* tool) : j_(j), tool_(tool) {}

  Result<void> Only(std::initializer_list<const char*> allowed) const {
    if (!j_.is_object()) return Bad("arguments", "must be an object");
    std::set<std::string> ok(allowed.begin(), allowed.end());
    for (const auto& [k, v] : j_.items()) {
      if (ok.count(k)) continue;
      std::string list;
      for (const char* a : allowed) list += std::string(list.empty() ? "" : ", ") + a;
      return Bad(k, "is not an argument of " + tool_ + " (it takes: " + list + ")");
    }
    return Ok();
  }
  Result<std::optional<std::string>> Str(const char* key, bool required) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (required) return Bad(key, "is required");
      return std::optional<std::string>();
    }
    if (!it->is_string()) return Bad(key, "must be a string");
    return std::optional<std::string>(it->get<std::string>());
  }
  Result<std::optional<uint64_t>> Uint(const char* key, uint64_t min, uint64_t max) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return std::optional<uint64_t>();
    if (it->is_number_float()) {
      double d = it->get<double>();
      if (d != static_cast<double>(static_cast<int64_t>(d))) return Bad(key, "must be an integer");
    } else if (!it->is_number_integer()) {
      return Bad(key, "must be an integer");
    }
    double d = it->get<double>();
    if (d < static_cast<double>(min) || d > static_cast<double>(max)) {
      return Bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    }
    return std::optional<uint64_t>(static_cast<uint64_t>(d));
  }
  Result<bool> Bool(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return false;
    if (!it->is_boolean()) return Bad(key, "must be true or false");
    return it->get<bool>();
  }
  Result<std::vector<std::string>> Env(const char* key) const {
    std::vector<std::string> out;
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return out;
    if (!it->is_object()) return Bad(key, "must be an object of names to string values");
    for (const auto& [k, v] : it->items()) {
      if (k.empty() || k.find('=') != std::string::npos) {
        return Bad(key, "has an invalid variable name '" + k + "'");
      }
      if (!v.is_string()) return Bad(key, "'" + k + "' must be a string");
      out.push_back(k + "=" + v.get<std::string>());
    }
    return out;
  }
  Result<std::string> Path(const char* key) const {
    auto p = WB_TRY(Str(key, true));
    if (p->empty() || (*p)[0] != '/') {
      return Bad(key, "must be an absolute path (e.g. /home/user/" +
                          (p->empty() ? std::string("file.txt") : *p) + ")");
    }
    return *p;
  }
  Result<std::string> SandboxId(bool required) const {
    auto id = WB_TRY(Str("sandbox_id", required));
    return id.value_or("");
  }

 private:
  Error Bad(const std::string& key, const std::string& why) const {
    return Fail(ErrorCode::kInvalidArgument, tool_, key, "argument '" + key + "' " + why);
  }
  const json& j_;
  std::string tool_;
};

// --- results --------------------------------------------------------------------

json Text(const std::string& s) { return {{"type", "text"}, {"text", s}}; }

json ToolError(const std::string& message) {
  return {{"content", json::array({Text(message)})}, {"isError", true}};
}

// What a model reads for a failed call: the tool, what went wrong, and
// what to do about it when the code says.
std::string ErrorMessage(const std::string& tool, const Error& e) {
  std::string msg = tool + " failed: ";
  if (e.code == ErrorCode::kInvalidArgument && e.call == tool) {
    msg += e.detail;  // the argument's own message
  } else {
    msg += e.ToString();
  }
  switch (e.code) {
    case ErrorCode::kBusy:
      msg +=
          " (the daemon's sandbox limit is reached: kill sandboxes you no longer need, or "
          "retry later)";
      break;
    case ErrorCode::kDraining:
      msg += " (the warmbox daemon is shutting down)";
      break;
    default:
      break;
  }
  return msg;
}

std::string Clip(const std::string& s, bool truncated) {
  return truncated ? s + "\n[... output truncated at " + std::to_string(kMaxOutput) + " bytes]" : s;
}

json RunResult(const CommandResult& r, const std::string& sandbox_id, bool kept,
               const std::vector<RichOutput>& outputs) {
  std::string text = "exit_code: " + std::to_string(r.exit_code);
  if (r.timed_out) text += " (timed out: killed)";
  text += "\nstdout:\n" + Clip(r.stdout_data, r.stdout_truncated);
  if (!r.stdout_data.empty() && r.stdout_data.back() != '\n') text += "\n";
  text += "stderr:\n" + Clip(r.stderr_data, r.stderr_truncated);
  if (!sandbox_id.empty()) text += "\n(sandbox " + sandbox_id + ")";
  json content = json::array({Text(text)});
  for (const auto& o : outputs) {
    if (o.mime.rfind("image/", 0) == 0) {
      content.push_back({{"type", "image"}, {"data", o.data}, {"mimeType", o.mime}});
    } else {
      content.push_back(Text(o.data));
    }
  }
  json structured = {{"stdout", r.stdout_data},
                     {"stderr", r.stderr_data},
                     {"exit_code", r.exit_code},
                     {"timed_out", r.timed_out}};
  if (!sandbox_id.empty()) structured["sandbox_id"] = sandbox_id;
  if (kept) structured["sandbox_kept"] = true;
  return {{"content", std::move(content)},
          {"structuredContent", std::move(structured)},
          {"isError", false}};
}

// --- the tools ------------------------------------------------------------------

// The sandbox a run uses: the one named, or a fresh one (fresh = true).
asio::awaitable<Result<std::string>> SandboxFor(Backend& b, std::string id, bool* fresh) {
  *fresh = id.empty();
  if (!id.empty()) co_return id;
  SandboxSpec spec;
  co_return co_await b.CreateSandbox(std::move(spec));
}

asio::awaitable<json> RunCodeTool(Backend& b, const json& j) {
  Args a(j, "run_code");
  std::string language, code, id;
  bool keep = false;
  uint64_t timeout_s = kDefaultRunTimeoutS;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(
          a.Only({"language", "code", "sandbox_id", "keep_sandbox", "timeout_seconds"}));
      language = *WB_TRY(a.Str("language", true));
      if (language != "python" && language != "javascript" && language != "bash") {
        return Fail(
            ErrorCode::kInvalidArgument, "run_code", "language",
            "argument 'language' must be one of python, javascript, bash (got '" + language + "')");
      }
      code = *WB_TRY(a.Str("code", true));
      id = WB_TRY(a.SandboxId(false));
      keep = WB_TRY(a.Bool("keep_sandbox"));
      timeout_s = WB_TRY(a.Uint("timeout_seconds", 1, kMaxRunTimeoutS)).value_or(timeout_s);
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("run_code", parsed.error()));
  }
  bool fresh = false;
  auto sandbox = co_await SandboxFor(b, id, &fresh);
  if (!sandbox.ok()) co_return ToolError(ErrorMessage("run_code", sandbox.error()));
  auto r = co_await b.RunCode(*sandbox, language, code, timeout_s * 1000);
  if (fresh && !keep) (void)co_await b.KillSandbox(*sandbox);
  if (!r.ok()) co_return ToolError(ErrorMessage("run_code", r.error()));
  const bool kept = fresh && keep;
  std::string shown;
  if (!fresh || kept) shown = *sandbox;
  co_return RunResult(r->command, shown, kept, r->outputs);
}

asio::awaitable<json> RunCommandTool(Backend& b, const json& j) {
  Args a(j, "run_command");
  CommandSpec cmd;
  std::string id;
  bool keep = false;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(
          a.Only({"command", "sandbox_id", "cwd", "env", "keep_sandbox", "timeout_seconds"}));
      std::string line = *WB_TRY(a.Str("command", true));
      if (line.empty()) {
        return Fail(ErrorCode::kInvalidArgument, "run_command", "command",
                    "argument 'command' is empty");
      }
      cmd.argv = {"/bin/sh", "-c", line};
      id = WB_TRY(a.SandboxId(false));
      cmd.cwd = WB_TRY(a.Str("cwd", false)).value_or("");
      if (!cmd.cwd.empty() && cmd.cwd[0] != '/') {
        return Fail(ErrorCode::kInvalidArgument, "run_command", "cwd",
                    "argument 'cwd' must be an absolute path");
      }
      cmd.env = WB_TRY(a.Env("env"));
      keep = WB_TRY(a.Bool("keep_sandbox"));
      cmd.timeout_ms =
          WB_TRY(a.Uint("timeout_seconds", 1, kMaxRunTimeoutS)).value_or(kDefaultRunTimeoutS) *
          1000;
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("run_command", parsed.error()));
  }
  bool fresh = false;
  auto sandbox = co_await SandboxFor(b, id, &fresh);
  if (!sandbox.ok()) co_return ToolError(ErrorMessage("run_command", sandbox.error()));
  auto r = co_await b.Run(*sandbox, std::move(cmd));
  if (fresh && !keep) (void)co_await b.KillSandbox(*sandbox);
  if (!r.ok()) co_return ToolError(ErrorMessage("run_command", r.error()));
  const bool kept = fresh && keep;
  std::string shown;
  if (!fresh || kept) shown = *sandbox;
  co_return RunResult(*r, shown, kept, {});
}

asio::awaitable<json> CreateTool(Backend& b, const json& j) {
  Args a(j, "create_sandbox");
  SandboxSpec spec;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(a.Only({"image", "timeout_seconds", "env"}));
      spec.image = WB_TRY(a.Str("image", false)).value_or("");
      spec.timeout_s = WB_TRY(a.Uint("timeout_seconds", 1, uint64_t{1} << 32));
      spec.env = WB_TRY(a.Env("env"));
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("create_sandbox", parsed.error()));
  }
  std::string image = spec.image.empty() ? kDefaultImage : spec.image;
  auto id = co_await b.CreateSandbox(std::move(spec));
  if (!id.ok()) co_return ToolError(ErrorMessage("create_sandbox", id.error()));
  std::string text = "Created sandbox " + *id + " (image " + image + "). Pass sandbox_id \"" + *id +
                     "\" to run_code, run_command and the file tools; call kill_sandbox when "
                     "done.";
  co_return json{{"content", json::array({Text(text)})},
                 {"structuredContent", {{"sandbox_id", *id}, {"image", image}}},
                 {"isError", false}};
}

asio::awaitable<json> KillTool(Backend& b, const json& j) {
  Args a(j, "kill_sandbox");
  std::string id;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(a.Only({"sandbox_id"}));
      id = WB_TRY(a.SandboxId(true));
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("kill_sandbox", parsed.error()));
  }
  auto r = co_await b.KillSandbox(id);
  if (!r.ok()) co_return ToolError(ErrorMessage("kill_sandbox", r.error()));
  co_return json{{"content", json::array({Text("Killed sandbox " + id + ".")})},
                 {"isError", false}};
}

asio::awaitable<json> ListTool(Backend& b, const json& j) {
  Args a(j, "list_sandboxes");
  if (auto ok = a.Only({}); !ok.ok()) {
    co_return ToolError(ErrorMessage("list_sandboxes", ok.error()));
  }
  auto list = co_await b.ListSandboxes();
  if (!list.ok()) co_return ToolError(ErrorMessage("list_sandboxes", list.error()));
  json arr = json::array();
  for (const auto& s : *list) {
    arr.push_back({{"sandbox_id", s.id},
                   {"image", s.image},
                   {"state", s.state},
                   {"created_ms", s.created_ms},
                   {"expires_ms", s.expires_ms},
                   {"metadata", s.metadata}});
  }
  std::string text = arr.empty() ? std::string("No live sandboxes.") : arr.dump(2);
  co_return json{{"content", json::array({Text(text)})},
                 {"structuredContent", {{"sandboxes", arr}}},
                 {"isError", false}};
}

asio::awaitable<json> ReadTool(Backend& b, const json& j) {
  Args a(j, "read_file");
  std::string id, path;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(a.Only({"sandbox_id", "path"}));
      id = WB_TRY(a.SandboxId(true));
      path = WB_TRY(a.Path("path"));
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("read_file", parsed.error()));
  }
  auto data = co_await b.ReadFile(id, path);
  if (!data.ok()) co_return ToolError(ErrorMessage("read_file", data.error()));
  json item;
  if (std::string mime = ImageMime(*data); !mime.empty()) {
    item = {{"type", "image"}, {"data", daemon::Base64Encode(*data)}, {"mimeType", mime}};
  } else if (IsUtf8(*data)) {
    item = Text(*data);
  } else {
    item = {{"type", "resource"},
            {"resource",
             {{"uri", "file://" + path},
              {"mimeType", "application/octet-stream"},
              {"blob", daemon::Base64Encode(*data)}}}};
  }
  co_return json{{"content", json::array({std::move(item)})}, {"isError", false}};
}

asio::awaitable<json> WriteTool(Backend& b, const json& j) {
  Args a(j, "write_file");
  std::string id, path, content;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(a.Only({"sandbox_id", "path", "content", "encoding"}));
      id = WB_TRY(a.SandboxId(true));
      path = WB_TRY(a.Path("path"));
      content = *WB_TRY(a.Str("content", true));
      std::string enc = WB_TRY(a.Str("encoding", false)).value_or("utf8");
      if (enc == "base64") {
        content = WB_TRY(daemon::Base64Decode(content, "content"));
      } else if (enc != "utf8") {
        return Fail(ErrorCode::kInvalidArgument, "write_file", "encoding",
                    "argument 'encoding' must be utf8 or base64 (got '" + enc + "')");
      }
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("write_file", parsed.error()));
  }
  const size_t n = content.size();
  auto r = co_await b.WriteFile(id, path, std::move(content));
  if (!r.ok()) co_return ToolError(ErrorMessage("write_file", r.error()));
  co_return json{
      {"content", json::array({Text("Wrote " + std::to_string(n) + " bytes to " + path + ".")})},
      {"isError", false}};
}

asio::awaitable<json> ListFilesTool(Backend& b, const json& j) {
  Args a(j, "list_files");
  std::string id, path;
  uint32_t depth = 1;
  {
    auto parsed = [&]() -> Result<void> {
      WB_RETURN_IF_ERROR(a.Only({"sandbox_id", "path", "depth"}));
      id = WB_TRY(a.SandboxId(true));
      path = WB_TRY(a.Path("path"));
      depth = static_cast<uint32_t>(WB_TRY(a.Uint("depth", 1, 10)).value_or(1));
      return Ok();
    }();
    if (!parsed.ok()) co_return ToolError(ErrorMessage("list_files", parsed.error()));
  }
  auto entries = co_await b.ListFiles(id, path, depth);
  if (!entries.ok()) co_return ToolError(ErrorMessage("list_files", entries.error()));
  std::string text;
  json arr = json::array();
  for (const auto& e : *entries) {
    text += e.type + "\t" + e.path;
    if (e.type == "file") text += "\t" + std::to_string(e.size) + " bytes";
    text += "\n";
    arr.push_back({{"path", e.path}, {"type", e.type}, {"size", e.size}});
  }
  if (text.empty()) text = path + " is empty.";
  co_return json{{"content", json::array({Text(text)})},
                 {"structuredContent", {{"entries", arr}}},
                 {"isError", false}};
}

}  // namespace

const json& ToolList() {
  static const json tools = BuildToolList();
  return tools;
}

bool IsTool(std::string_view name) {
  for (const auto& t : ToolList()) {
    if (t["name"].get<std::string>() == name) return true;
  }
  return false;
}

asio::awaitable<json> CallTool(Backend& backend, std::string name, json args) {
  if (args.is_null()) args = json::object();
  if (name == "run_code") co_return co_await RunCodeTool(backend, args);
  if (name == "run_command") co_return co_await RunCommandTool(backend, args);
  if (name == "create_sandbox") co_return co_await CreateTool(backend, args);
  if (name == "kill_sandbox") co_return co_await KillTool(backend, args);
  if (name == "list_sandboxes") co_return co_await ListTool(backend, args);
  if (name == "read_file") co_return co_await ReadTool(backend, args);
  if (name == "write_file") co_return co_await WriteTool(backend, args);
  if (name == "list_files") co_return co_await ListFilesTool(backend, args);
  co_return ToolError("unknown tool '" + name + "'");
}

std::optional<std::vector<std::string>> CodeCommand(const std::string& language,
                                                    const std::string& code) {
  if (language == "python") return std::vector<std::string>{"python3", "-c", code};
  if (language == "javascript") return std::vector<std::string>{"node", "-e", code};
  if (language == "bash") return std::vector<std::string>{"bash", "-c", code};
  return std::nullopt;
}

asio::awaitable<Result<CodeResult>> Backend::RunCode(std::string id, std::string language,
                                                     std::string code, uint64_t timeout_ms) {
  auto argv = CodeCommand(language, code);
  if (!argv) {
    co_return Fail(ErrorCode::kInvalidArgument, "run_code", language, "unknown language");
  }
  const std::string program = argv->front();
  CommandSpec cmd;
  cmd.argv = std::move(*argv);
  cmd.timeout_ms = timeout_ms;
  auto r = co_await Run(id, std::move(cmd));
  if (!r.ok()) co_return r.error();
  if (r->exit_code == 127 && r->not_started) {
    co_return Fail(ErrorCode::kFailedPrecondition, "run_code", language,
                   program + " is not installed in this sandbox's image, so " + language +
                       " cannot run here: use another language, install it with run_command in "
                       "a sandbox from create_sandbox, or create a sandbox from an image that "
                       "has it");
  }
  CodeResult out;
  out.command = std::move(*r);
  co_return out;
}

void AddInterpreterEvent(const std::string& line, CodeResult& out) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return;
  const std::string type = j["type"].get<std::string>();
  auto text = [&](const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  CommandResult& c = out.command;
  if (type == "stdout" || type == "stderr") {
    std::string& dst = type == "stdout" ? c.stdout_data : c.stderr_data;
    bool& cut = type == "stdout" ? c.stdout_truncated : c.stderr_truncated;
    std::string t = text("text");
    if (dst.size() + t.size() > kMaxOutput) {
      t.resize(kMaxOutput - std::min(kMaxOutput, dst.size()));
      cut = true;
    }
    dst += t;
  } else if (type == "result") {
    static const std::pair<const char*, const char*> kMimes[] = {{"png", "image/png"},
                                                                 {"jpeg", "image/jpeg"},
                                                                 {"svg", "image/svg+xml"},
                                                                 {"html", "text/html"},
                                                                 {"markdown", "text/markdown"},
                                                                 {"latex", "text/latex"},
                                                                 {"javascript", "text/javascript"},
                                                                 {"text", "text/plain"}};
    for (const auto& [key, mime] : kMimes) {
      if (j.contains(key) && j[key].is_string())
        out.outputs.push_back({mime, j[key].get<std::string>()});
    }
    if (j.contains("json") && !j["json"].is_null()) {
      out.outputs.push_back({"application/json", j["json"].dump()});
    }
  } else if (type == "error") {
    c.exit_code = 1;
    c.stderr_data += text("name") + ": " + text("value") + "\n" + text("traceback");
  }
}

std::string ImageMime(std::string_view d) {
  if (d.size() >= 8 && d.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) {
    return "image/png";
  }
  if (d.size() >= 3 && d.substr(0, 3) == "\xff\xd8\xff") return "image/jpeg";
  if (d.size() >= 6 && (d.substr(0, 6) == "GIF87a" || d.substr(0, 6) == "GIF89a")) {
    return "image/gif";
  }
  if (d.size() >= 12 && d.substr(0, 4) == "RIFF" && d.substr(8, 4) == "WEBP") return "image/webp";
  return "";
}

bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace wb::mcp
