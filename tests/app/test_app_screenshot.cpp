// bitfsck-gui --screenshot under Xvfb, for every view over a checkpoint file and over the sample
// run: the PNG has the asked size, is not blank, and shows the view's tell-tale colours (e.g. the
// layers view's collapsed rows tinted red). Colours come from the app's palette, which is opaque
// so that the pixels are predictable.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <stb_image.h>  // implementation in libstb, linked through pkg-config imgui

#include "bitfsck/app/induction.hpp"  // kHaveModel
#include "bitfsck/app/palette.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using bitfsck::test::quote;
using bitfsck::test::run_command;
namespace palette = bitfsck::app::palette;

namespace {

fs::path gui_path() { return fs::path(BITFSCK_CLI).parent_path().parent_path() / "app" / "bitfsck-gui"; }

bool have_xvfb() { return std::system("command -v xvfb-run >/dev/null 2>&1") == 0; }

bool run_has_checkpoints() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(bitfsck::test::samples_dir() / "run", ec))
        if (e.path().extension() == ".pt") return true;
    return false;
}

struct Image {
    int width = 0, height = 0;
    std::unique_ptr<unsigned char, void (*)(void*)> pixels{nullptr, stbi_image_free};

    // Pixels within `tolerance` of c on every channel.
    long count(palette::Rgb c, int tolerance = 10) const {
        long n = 0;
        const unsigned char* p = pixels.get();
        for (long i = 0; i < long(width) * height; ++i, p += 3)
            if (std::abs(p[0] - c.r) <= tolerance && std::abs(p[1] - c.g) <= tolerance && std::abs(p[2] - c.b) <= tolerance) ++n;
        return n;
    }

    // Variance of the luminance: a blank (one-colour) frame has none.
    double variance() const {
        double sum = 0, sq = 0;
        const unsigned char* p = pixels.get();
        const long n = long(width) * height;
        for (long i = 0; i < n; ++i, p += 3) {
            const double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            sum += y;
            sq += y * y;
        }
        const double mean = sum / n;
        return sq / n - mean * mean;
    }
};

Image screenshot(const fs::path& input, const std::string& view, int width = 1280, int height = 800) {
    bitfsck::test::TempDir tmp;
    const fs::path out = tmp / ("shot_" + view + ".png");
    const std::string cmd = "xvfb-run -a -s '-screen 0 1280x800x24' " + quote(gui_path()) + " --screenshot " + quote(out) +
                            " --view " + view + " --width " + std::to_string(width) + " --height " + std::to_string(height) + " " +
                            quote(input);
    const auto r = run_command(cmd);
    INFO(cmd);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    Image img;
    int channels = 0;
    img.pixels.reset(stbi_load(out.string().c_str(), &img.width, &img.height, &channels, 3));
    REQUIRE(img.pixels);
    return img;
}

}  // namespace

TEST_CASE("bitfsck-gui refuses bad arguments with one line on stderr, before opening a window") {
    REQUIRE(fs::exists(gui_path()));
    bitfsck::test::TempDir tmp;
    auto r = run_command(quote(gui_path()) + " --screenshot " + quote(tmp / "x.png") + " --view nonsense " +
                         quote(bitfsck::test::samples_dir() / "training_checkpoint.pt"));
    CHECK(r.exit_code == 1);  // usage, as the CLI's
    CHECK(r.err.find("--view") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);

    r = run_command(quote(gui_path()) + " --screenshot " + quote(tmp / "x.png") + " " + quote(tmp / "missing.pt"));
    CHECK(r.exit_code == 2);  // unreadable input, as the CLI's
    CHECK(r.err.find("missing.pt") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_FALSE(fs::exists(tmp / "x.png"));

    r = run_command(quote(gui_path()) + " --width 12 x.pt");
    CHECK(r.exit_code == 1);
}

TEST_CASE("screenshots of every view of a single checkpoint", "[xvfb]") {
    REQUIRE(have_xvfb());  // scripts/setup installs xvfb xauth libgl1-mesa-dri
    const fs::path ckpt = bitfsck::test::samples_dir() / "training_checkpoint.pt";

    SECTION("overview: the pickle's security finding in red on top, the healthy verdict in green") {
        Image img = screenshot(ckpt, "overview");
        CHECK(img.width == 1280);
        CHECK(img.height == 800);
        CHECK(img.variance() > 100);
        CHECK(img.count(palette::kSecurity) > 5000);
        CHECK(img.count(palette::kHealthyRow) > 5000);
        CHECK(img.count(palette::kCollapsedRow) < 200);
    }
    SECTION("layers: healthy rows tinted green, none red") {
        Image img = screenshot(ckpt, "layers");
        CHECK(img.variance() > 100);
        CHECK(img.count(palette::kHealthyRow) > 10000);
        CHECK(img.count(palette::kCollapsedRow) < 200);
    }
    SECTION("tensor: histogram bars and the ternary bar") {
        Image img = screenshot(ckpt, "tensor");
        CHECK(img.variance() > 100);
        CHECK(img.count(palette::kHistogramA) > 500);
        CHECK(img.count(palette::kTernaryZero, 4) > 1000);
        CHECK(img.count(palette::kTernaryNeg) > 500);
        CHECK(img.count(palette::kTernaryPos) > 500);
    }
    SECTION("timeline and compare of one file: no plot, no markers, still a readable frame") {
        Image t = screenshot(ckpt, "timeline");
        CHECK(t.variance() > 20);
        CHECK(t.count(palette::kOnset) < 50);
        Image c = screenshot(ckpt, "compare");
        CHECK(c.variance() > 20);
        CHECK(c.count(palette::kFlipBar) < 50);
    }
    SECTION("another window size is honoured") {
        Image img = screenshot(ckpt, "layers", 1024, 640);
        CHECK(img.width == 1024);
        CHECK(img.height == 640);
    }
}

TEST_CASE("screenshots of every view of the collapsing sample run", "[xvfb][run]") {
    REQUIRE(have_xvfb());  // scripts/setup installs xvfb xauth libgl1-mesa-dri
    REQUIRE(run_has_checkpoints());  // committed; sample_ckpts/make_run.py writes them
    const fs::path run = bitfsck::test::samples_dir() / "run";

    SECTION("overview: the run's collapsed verdict in red") {
        Image img = screenshot(run, "overview");
        CHECK(img.variance() > 100);
        CHECK(img.count(palette::kCollapsedRow) > 10000);
    }
    SECTION("layers: the collapsed MLP rows red, the attention rows green") {
        Image img = screenshot(run, "layers");
        CHECK(img.count(palette::kCollapsedRow) > 10000);
        CHECK(img.count(palette::kHealthyRow) > 10000);
    }
    SECTION("tensor: a collapsed tensor beside a healthy one, with the rounding threshold") {
        Image img = screenshot(run, "tensor");
        CHECK(img.count(palette::kHistogramA) > 100);
        CHECK(img.count(palette::kHistogramB) > 1000);
        CHECK(img.count(palette::kThreshold) > 100);
    }
    SECTION("timeline: onset and last healthy markers") {
        Image img = screenshot(run, "timeline");
        CHECK(img.variance() > 100);
        CHECK(img.count(palette::kOnset) > 300);
        CHECK(img.count(palette::kLastHealthy) > 300);
    }
    SECTION("compare: flip-rate bars of the last healthy checkpoint against the onset") {
        Image img = screenshot(run, "compare");
        CHECK(img.variance() > 100);
        CHECK(img.count(palette::kFlipBar) > 300);
    }
}

TEST_CASE("screenshot of the induction view: the probe runs first, the heat map is drawn", "[xvfb][model]") {
    const fs::path model = bitfsck::test::samples_dir() / "models" / "llama_student.pt";
    if (!bitfsck::app::kHaveModel) {
        // Built without model/: the view cannot be rendered with a heat map, and says so at once.
        bitfsck::test::TempDir tmp;
        auto r = run_command(quote(gui_path()) + " --screenshot " + quote(tmp / "x.png") + " --view induction " + quote(model));
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("without model/") != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        return;
    }
    REQUIRE(have_xvfb());  // scripts/setup installs xvfb xauth libgl1-mesa-dri
    Image img = screenshot(model, "induction");
    CHECK(img.width == 1280);
    CHECK(img.height == 800);
    CHECK(img.variance() > 100);
    // 2 layers x 4 heads, coloured on a scale up to the largest IPMR: the top head's cell is the
    // ramp's brightest colour, framed cyan; the weaker heads' cells are darker ramp colours.
    const auto& ramp = palette::kInductionRamp;
    CHECK(img.count(ramp[4], 6) > 2000);
    CHECK(img.count(palette::kInductionTop) > 300);
    long darker = 0;
    for (int i = 0; i < 4; ++i) darker += img.count(ramp[i], 30);
    CHECK(darker > 2000);
    // Nothing from the other views.
    CHECK(img.count(palette::kCollapsedRow) < 200);
}

TEST_CASE("screenshot of the repair view: the preview of a collapsed tensor before and after inflate", "[xvfb][run]") {
    REQUIRE(have_xvfb());  // scripts/setup installs xvfb xauth libgl1-mesa-dri
    REQUIRE(run_has_checkpoints());  // committed; sample_ckpts/make_run.py writes them
    fs::path last;
    for (const auto& e : fs::directory_iterator(bitfsck::test::samples_dir() / "run"))
        if (e.path().extension() == ".pt" && (last.empty() || e.path().filename() > last.filename())) last = e.path();
    Image img = screenshot(last, "repair");
    CHECK(img.width == 1280);
    CHECK(img.variance() > 100);
    CHECK(img.count(palette::kHistogramA) > 100);   // before
    CHECK(img.count(palette::kHistogramB) > 1000);  // after: spread out of the dead zone
    CHECK(img.count(palette::kTernaryNeg) > 500);
    CHECK(img.count(palette::kTernaryPos) > 500);
}

TEST_CASE("screenshot of the resurrect view: the plan of the sample run with its stages", "[xvfb][run]") {
    REQUIRE(have_xvfb());  // scripts/setup installs xvfb xauth libgl1-mesa-dri
    REQUIRE(run_has_checkpoints());
    Image img = screenshot(bitfsck::test::samples_dir() / "run", "resurrect");
    CHECK(img.width == 1280);
    CHECK(img.variance() > 100);
    // One square per recipe stage: the search (its candidates are listed under it).
    CHECK(img.count(palette::kRecipeStage) >= 100);
    CHECK(img.count(palette::kRecipeStage) <= 2 * 144);
}
