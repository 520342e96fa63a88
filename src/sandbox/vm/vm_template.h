// Snapshot templates, the pure parts: a template's state and its key
// (docs/architecture.md, "VM snapshot templates").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sandbox/vm/qemu_plan.h"

namespace wb::vm {

enum class TemplateState {
  kNone,      // no template yet
  kBuilding,  // a template VM is booting or being saved
  kReady,     // clones are made from it
  kFailed,    // the last build or clone failed; rebuilt on the next creation
  kFallback,  // too many failures: cold boots from now on
};
// The status/wire name: none, building, ready, failed, fallback.
const char* TemplateStateName(TemplateState s);

// The canonical text of a pool key and its hash (16 hex digits). init_args:
// the agent's AgentArgs::KeyArgs(). Pure.
std::string TemplateKeyText(const std::vector<std::string>& layer_dirs,
                            const std::string& kernel_id, const std::string& initrd_id,
                            const std::string& agent_id, uint32_t vcpus, uint64_t memory_mib,
                            const std::vector<std::string>& init_args, Accel accel);
std::string TemplateKeyHash(const std::string& key_text);

}  // namespace wb::vm
