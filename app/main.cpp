// bitfsck-gui [FILE|DIR...] [--screenshot OUT.png --view VIEW] [--width W --height H]
// The desktop app: a GLFW window and the ImGui frame loop over bitfsck_app. Everything it shows
// comes from the libraries through AppState; this file only owns the window, the settings files
// and the headless screenshot mode used by the docs and the tests.
#include <cfloat>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include "bitfsck/app/app_state.hpp"
#include "bitfsck/app/loader.hpp"
#include "bitfsck/app/screenshot.hpp"
#include "bitfsck/app/settings.hpp"
#include "bitfsck/app/ui.hpp"

namespace fs = std::filesystem;
using namespace bitfsck;
using namespace bitfsck::app;

namespace {

struct Args {
    std::vector<std::string> inputs;
    std::optional<fs::path> screenshot;
    View view = View::Overview;
    int width = 1280, height = 800;
    double timeout_s = 300;
};

constexpr const char* kUsageText =
    "usage: bitfsck-gui [FILE|DIR...] [--screenshot OUT.png --view overview|layers|tensor|timeline|compare|induction|repair|resurrect]\n"
    "                   [--width 1280 --height 800] [--timeout SECONDS]\n"
    "Opens checkpoints and run folders in the bitfsck desktop app. With --screenshot it waits for loading and\n"
    "analysis to finish (at most --timeout seconds), renders the view, writes a PNG and exits; for the induction\n"
    "view it first runs the induction probe (cpu, default parameters) on the first input; for the repair view it\n"
    "previews the first collapsed tensor of the first input with the default inflate parameters; for the resurrect\n"
    "view it plans the first input (a run folder) and shows the recipe with its reasons (and the results of a run\n"
    "already in <run>.resurrected/).\n"
    "Exit codes: 0 done, 1 bad arguments, 2 an input could not be read or the PNG written, 124 a screenshot timed out.\n";

// The CLI's codes (README): 1 bad usage, 2 a file that cannot be read or an output that cannot be
// written; and 124 for a screenshot that timed out waiting for its analysis.
constexpr int kUsage = 1, kUnreadable = 2, kTimedOut = 124;

[[noreturn]] void fail(const std::string& message, int code = kUsage) {
    std::cerr << "bitfsck-gui: " << message << "\n";
    std::exit(code);
}

int parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
    try {
        std::size_t used = 0;
        int n = std::stoi(v, &used);
        if (used == v.size() && n >= lo && n <= hi) return n;
    } catch (const std::exception&) {
    }
    fail(flag + " wants a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", not '" + v + "'");
}

Args parse_args(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "-h" || arg == "--help") {
            std::cout << kUsageText;
            std::exit(0);
        } else if (arg == "--version") {
            std::cout << "bitfsck-gui " << BITFSCK_VERSION << "\n";
            std::exit(0);
        } else if (arg == "--screenshot") {
            a.screenshot = value();
        } else if (arg == "--view") {
            const std::string v = value();
            auto view = view_from_name(v);
            if (!view) fail("--view wants overview, layers, tensor, timeline, compare, induction, repair or resurrect, not '" + v + "'");
            a.view = *view;  // without --screenshot: the view the app starts on
        } else if (arg == "--width") {
            a.width = parse_int(arg, value(), 320, 8192);
        } else if (arg == "--height") {
            a.height = parse_int(arg, value(), 240, 8192);
        } else if (arg == "--timeout") {
            a.timeout_s = parse_int(arg, value(), 1, 86400);
        } else if (arg.size() > 1 && arg[0] == '-' && arg != "-") {
            fail("unknown option " + arg + " (see --help)");
        } else {
            a.inputs.push_back(arg);
        }
    }
    if (a.screenshot && a.inputs.empty()) fail("--screenshot needs at least one file or folder to open");
    if (a.screenshot && a.view == View::Induction && !kHaveModel)
        fail("--view induction: this bitfsck-gui was built without model/ (configure with -DBITFSCK_BUILD_MODEL=ON)");
    for (const auto& in : a.inputs) {
        std::error_code ec;
        if (!fs::exists(in, ec)) fail(in + ": no such file or folder", kUnreadable);
    }
    return a;
}

std::string g_glfw_error;
std::vector<std::string> g_dropped;  // filled by the drop callback, drained by the frame loop

void glfw_error(int, const char* description) { g_glfw_error = description ? description : "unknown GLFW error"; }

void on_drop(GLFWwindow*, int count, const char** paths) {
    for (int i = 0; i < count; ++i) g_dropped.emplace_back(paths[i]);
}

// After the command line's inputs are loaded: show the first one, and compare the first two
// (in the order given, which background jobs do not keep).
void arrange_initial(AppState& s, const Args& a) {
    std::vector<int> ids;
    for (const auto& in : a.inputs) {
        std::error_code ec;
        for (const auto& d : s.documents)
            if (d.path == fs::path(in) || fs::equivalent(d.path, in, ec)) {
                ids.push_back(d.id);
                break;
            }
    }
    if (ids.empty()) return;
    const View view = s.view;
    select_document(s, ids.front());
    s.view = view;
    if (ids.size() >= 2) {
        const Document* a0 = find_document(s, ids[0]);
        const Document* a1 = find_document(s, ids[1]);
        s.compare_a = CheckpointRef{ids[0], a0->current};
        s.compare_b = CheckpointRef{ids[1], a1->current};
    }
}

void load_fonts() {
    ImGuiIO& io = ImGui::GetIO();
    // DejaVu Sans reads better than the built-in bitmap font on screenshots; the built-in one is
    // the fallback where it is not installed.
    const char* dejavu = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    std::error_code ec;
    // Latin plus the dashes, arrows and math signs the libraries' messages use (→, −, ≈, ±, ·).
    static ImVector<ImWchar> ranges;
    if (ranges.empty()) {
        ImFontGlyphRangesBuilder builder;
        builder.AddRanges(io.Fonts->GetGlyphRangesDefault());
        static const ImWchar extra[] = {0x0370, 0x03FF, 0x2010, 0x2027, 0x2190, 0x21FF, 0x2200, 0x22FF, 0};
        builder.AddRanges(extra);
        builder.BuildRanges(&ranges);
    }
    if (fs::exists(dejavu, ec) && io.Fonts->AddFontFromFileTTF(dejavu, 15.0f, nullptr, ranges.Data)) return;
    io.Fonts->AddFontDefault();
}

}  // namespace

int main(int argc, char** argv) {
    const Args args = parse_args(argc, argv);
    const bool shot = args.screenshot.has_value();

    glfwSetErrorCallback(glfw_error);
    if (!glfwInit()) fail("cannot open a window: " + (g_glfw_error.empty() ? std::string("no display") : g_glfw_error));
    glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
    glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 2);
    glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
    glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
    // A screenshot must be exactly --width x --height: no resizing by a window manager.
    if (shot) glfwWindowHint(GLFW_RESIZABLE, GLFW_FALSE);
    GLFWwindow* window = glfwCreateWindow(args.width, args.height, "bitfsck", nullptr, nullptr);
    if (!window) {
        glfwTerminate();
        fail("cannot create an OpenGL 3.2 window: " + g_glfw_error);
    }
    glfwMakeContextCurrent(window);
    glfwSwapInterval(shot ? 0 : 1);
    glfwSetDropCallback(window, on_drop);

    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    const std::optional<fs::path> config = config_dir();
    std::string ini_path;
    if (shot) {
        io.IniFilename = nullptr;  // screenshots are reproducible: no layout from the user's settings
    } else if (config) {
        std::error_code ec;
        fs::create_directories(*config, ec);
        ini_path = (*config / "imgui.ini").string();
        io.IniFilename = ini_path.c_str();
    }
    ImGui::StyleColorsDark();
    load_fonts();
    ImGui_ImplGlfw_InitForOpenGL(window, true);
    ImGui_ImplOpenGL3_Init("#version 150");

    AppState state;
    if (config && !shot) state.recent = load_recent(*config);
    std::vector<std::string> saved_recent = state.recent;
    state.view = args.view;
    for (const auto& in : args.inputs) start_open(state, in);
    if (shot) saved_recent = state.recent;  // never written in screenshot mode
    UiFlags flags;
    bool arranged = args.inputs.empty();
    int settled_frames = 0;
    std::size_t errors_seen = 0;
    const auto started = std::chrono::steady_clock::now();
    int exit_code = 0;

    while (!glfwWindowShouldClose(window)) {
        // Idle, the app sleeps until an event; while jobs run it wakes to move the progress bar.
        if (shot) glfwPollEvents();
        else glfwWaitEventsTimeout(busy(state) ? 0.05 : 0.5);
        for (auto& path : g_dropped) start_open(state, path);
        g_dropped.clear();
        poll_jobs(state);
        if (!arranged && state.loads.empty()) {
            arrange_initial(state, args);
            arranged = true;
            // A screenshot of the induction view shows a heat map: run the probe first (the loop
            // below waits for it like for any job).
            if (shot && args.view == View::Induction) {
                if (auto ref = current_checkpoint_ref(state)) start_induction(state, *ref, state.induction.params);
            }
            // The resurrection view: the plan of the first input (a run), with its reasons.
            if (shot && args.view == View::Resurrect) {
                if (const Document* d = selected_document(state)) {
                    default_resurrect_paths(state.resurrect, d->path);
                    start_resurrect_plan(state.jobs, state.resurrect);
                    // A finished run in the default output folder is shown too.
                    state.resurrect.log = read_resurrection_log(state.resurrect.out_dir);
                }
            }
            // The repair view: the preview of the first collapsed tensor (default inflate), computed here.
            if (shot && args.view == View::Repair) {
                if (auto ref = current_checkpoint_ref(state)) {
                    const CheckpointData* c = find_checkpoint(state, *ref);
                    if (auto t = default_repair_tensor(c->report, std::nullopt)) {
                        state.repair.tensor = *t;
                        state.repair.tensor_of = *ref;
                        run_repair_preview(state, *ref, *t, state.repair.params);
                    }
                }
            }
        }
        if (shot) {
            // Any error while loading what the screenshot is of makes the screenshot meaningless.
            for (; errors_seen < state.log.size(); ++errors_seen)
                if (state.log[errors_seen].level == LogLine::Level::Error) {
                    std::cerr << "bitfsck-gui: " << state.log[errors_seen].text << "\n";
                    exit_code = kUnreadable;
                }
            if (exit_code) break;
        } else if (config && state.recent != saved_recent) {
            try {
                save_recent(*config, state.recent);
            } catch (const Error& e) {
                log_error(state, e.what());
            }
            saved_recent = state.recent;
        }

        ImGui_ImplOpenGL3_NewFrame();
        ImGui_ImplGlfw_NewFrame();
        // A screenshot shows the view, not tooltips for wherever the X server left its pointer.
        if (shot) io.MousePos = ImVec2(-FLT_MAX, -FLT_MAX);
        ImGui::NewFrame();
        handle_shortcuts(state, flags);
        draw_main_window(state, flags);
        ImGui::Render();
        int fbw = 0, fbh = 0;
        glfwGetFramebufferSize(window, &fbw, &fbh);
        glViewport(0, 0, fbw, fbh);
        glClearColor(0.08f, 0.08f, 0.10f, 1.0f);
        glClear(GL_COLOR_BUFFER_BIT);
        ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());

        if (shot) {
            // Done when nothing has been running for a few frames: the compare view starts its
            // diff while drawing, and tables and tabs take a frame or two to settle.
            settled_frames = arranged && !busy(state) && !flags.select_view_tab ? settled_frames + 1 : 0;
            if (settled_frames >= 4) {
                try {
                    write_framebuffer_png(*args.screenshot, fbw, fbh);
                } catch (const Error& e) {
                    std::cerr << "bitfsck-gui: " << e.what() << "\n";
                    exit_code = kUnreadable;
                }
                break;
            }
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            if (elapsed > args.timeout_s) {
                std::string what;
                overall_progress(state, &what);
                std::cerr << "bitfsck-gui: timed out after " << args.timeout_s << " s waiting for: " << what << "\n";
                exit_code = kTimedOut;
                break;
            }
        }
        glfwSwapBuffers(window);
    }

    cancel_all(state);
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplGlfw_Shutdown();
    ImGui::DestroyContext();
    glfwDestroyWindow(window);
    glfwTerminate();
    return exit_code;
}
