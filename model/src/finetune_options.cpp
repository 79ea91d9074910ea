// FinetuneOptions <-> JSON: OUT.state.json's "options" (what --resume reads back) and the document
// `finetune --options FILE` takes (what resurrect hands each fine-tuning stage). One reader for both,
// so a stage document and a resumed run can never mean different things.
#include <set>

#include "bitfsck/model/config.hpp"
#include "bitfsck/model/finetune.hpp"

namespace bitfsck::model {
using ojson = nlohmann::ordered_json;

ojson to_json(const FinetuneOptions& o) {
    ojson j;
    j["input"] = o.input.string();
    j["output"] = o.output.string();
    j["device"] = o.load.device;
    j["threads"] = o.load.threads;
    j["config_overrides"] = o.load.config.overrides;
    if (o.load.config.json_file) j["config_file"] = o.load.config.json_file->string();
    j["trusted_globals"] = o.trusted_globals;
    j["tokens"] = o.tokens.string();
    j["val_tokens"] = o.val_tokens.string();
    j["token_dtype"] = o.token_dtype == TokenDType::U16 ? "u16" : "u32";
    j["val_frac"] = o.val_frac;
    j["val_windows"] = o.val_windows;
    j["steps"] = o.steps;
    j["batch"] = o.batch;
    j["seq_len"] = o.seq_len;
    j["grad_accum"] = o.grad_accum;
    j["seed"] = o.seed;
    j["train"] = o.train_groups;
    const auto& op = o.optimizer;
    j["optimizer"] = {{"kind", optimizer_name(op.kind)}, {"lr", op.lr}, {"lr_other", op.lr_other}, {"beta1", op.beta1},
                      {"beta2", op.beta2}, {"eps", op.eps}, {"weight_decay_other", op.weight_decay_other},
                      {"momentum", op.momentum}, {"muon_momentum", op.muon_momentum}, {"muon_ns_steps", op.muon_ns_steps}};
    j["schedule"] = {{"kind", schedule_name(o.schedule.kind)}, {"warmup", o.schedule.warmup}, {"min_lr_frac", o.schedule.min_lr_frac}};
    j["clip"] = o.clip;
    ojson regs = ojson::array();
    for (const auto& r : o.regularizers) regs.push_back(to_json(r));
    j["regularizers"] = regs;
    j["like"] = o.like.string();
    j["teacher"] = o.teacher.string();
    j["kd_weight"] = o.kd_weight;
    j["kd_temp"] = o.kd_temp;
    j["precision"] = o.precision;
    j["save_every"] = o.save_every;
    j["eval_every"] = o.eval_every;
    j["drop_optimizer_state"] = o.drop_optimizer_state;
    j["compare_run"] = o.compare_run;
    j["world_size"] = o.dist.world_size;  // recorded, not read: the environment decides the placement
    return j;
}

namespace {

// Refuses keys this reader does not know: a misspelt "stpes" must not train 100 default steps.
void only_known(const nlohmann::json& j, const std::set<std::string>& known, const std::string& where) {
    if (!j.is_object()) throw ModelUsageError(where + ": expected a JSON object");
    for (const auto& [key, value] : j.items())
        if (!known.count(key)) throw ModelUsageError(where + ": unknown key '" + key + "'");
}

template <class T>
void read(const nlohmann::json& j, const char* key, T& into) {
    if (j.contains(key)) into = j[key].get<T>();
}

void read_path(const nlohmann::json& j, const char* key, std::filesystem::path& into) {
    if (j.contains(key)) into = j[key].get<std::string>();
}

}  // namespace

FinetuneOptions finetune_options_from_json(const nlohmann::json& j, const std::string& origin) {
    try {
        only_known(j,
                   {"input", "output", "device", "threads", "config_overrides", "config_file", "trusted_globals", "tokens", "val_tokens",
                    "token_dtype", "val_frac", "val_windows", "steps", "batch", "seq_len", "grad_accum", "seed", "train", "optimizer",
                    "schedule", "clip", "regularizers", "like", "teacher", "kd_weight", "kd_temp", "precision", "save_every",
                    "eval_every", "drop_optimizer_state", "compare_run", "world_size"},
                   origin);
        FinetuneOptions o;
        read_path(j, "input", o.input);
        read_path(j, "output", o.output);
        read(j, "device", o.load.device);
        read(j, "threads", o.load.threads);
        if (j.contains("config_overrides")) o.load.config.overrides = j["config_overrides"];
        if (j.contains("config_file")) o.load.config.json_file = j["config_file"].get<std::string>();
        read(j, "trusted_globals", o.trusted_globals);
        read_path(j, "tokens", o.tokens);
        read_path(j, "val_tokens", o.val_tokens);
        if (j.contains("token_dtype")) o.token_dtype = parse_token_dtype(j["token_dtype"].get<std::string>());
        read(j, "val_frac", o.val_frac);
        read(j, "val_windows", o.val_windows);
        read(j, "steps", o.steps);
        read(j, "batch", o.batch);
        read(j, "seq_len", o.seq_len);
        read(j, "grad_accum", o.grad_accum);
        read(j, "seed", o.seed);
        read(j, "train", o.train_groups);
        if (j.contains("optimizer")) {
            const auto& op = j["optimizer"];
            only_known(op, {"kind", "lr", "lr_other", "beta1", "beta2", "eps", "weight_decay_other", "momentum", "muon_momentum", "muon_ns_steps"},
                       origin + ": optimizer");
            if (op.contains("kind")) o.optimizer.kind = parse_optimizer(op["kind"].get<std::string>());
            read(op, "lr", o.optimizer.lr);
            // As on the command line: the other parameters follow the matrices' rate unless given.
            o.optimizer.lr_other = op.contains("lr_other") ? op["lr_other"].get<double>() : o.optimizer.lr;
            read(op, "beta1", o.optimizer.beta1);
            read(op, "beta2", o.optimizer.beta2);
            read(op, "eps", o.optimizer.eps);
            read(op, "weight_decay_other", o.optimizer.weight_decay_other);
            read(op, "momentum", o.optimizer.momentum);
            read(op, "muon_momentum", o.optimizer.muon_momentum);
            read(op, "muon_ns_steps", o.optimizer.muon_ns_steps);
        }
        if (j.contains("schedule")) {
            const auto& sc = j["schedule"];
            only_known(sc, {"kind", "warmup", "min_lr_frac"}, origin + ": schedule");
            if (sc.contains("kind")) o.schedule.kind = parse_schedule(sc["kind"].get<std::string>());
            read(sc, "warmup", o.schedule.warmup);
            read(sc, "min_lr_frac", o.schedule.min_lr_frac);
        }
        read(j, "clip", o.clip);
        if (j.contains("regularizers"))
            for (const auto& r : j["regularizers"])
                o.regularizers.push_back(parse_regularizer(r.is_string() ? r.get<std::string>() : r.at("spec").get<std::string>()));
        read_path(j, "like", o.like);
        read_path(j, "teacher", o.teacher);
        read(j, "kd_weight", o.kd_weight);
        read(j, "kd_temp", o.kd_temp);
        read(j, "precision", o.precision);
        read(j, "save_every", o.save_every);
        read(j, "eval_every", o.eval_every);
        read(j, "drop_optimizer_state", o.drop_optimizer_state);
        read(j, "compare_run", o.compare_run);
        return o;
    } catch (const nlohmann::json::exception& e) {
        throw ModelUsageError(origin + ": not fine-tuning options (" + e.what() + ")");
    }
}

}  // namespace bitfsck::model
