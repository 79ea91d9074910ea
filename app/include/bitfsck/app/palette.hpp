#pragma once
// The app's colours, shared with the screenshot test so it can find the regions a view must
// show (e.g. collapsed rows tinted red). All opaque: a tint blended with the background would
// land on a colour the test cannot predict.
#include <cstdint>

namespace bitfsck::app::palette {

struct Rgb {
    std::uint8_t r, g, b;
};

inline constexpr Rgb kCollapsedRow{112, 30, 34};     // table rows, verdict banners: collapsed
inline constexpr Rgb kDegradedRow{110, 86, 20};      // ... degraded
inline constexpr Rgb kHealthyRow{26, 78, 44};        // ... healthy
inline constexpr Rgb kSecurity{170, 24, 24};         // security findings banner
inline constexpr Rgb kHistogramA{70, 140, 220};      // tensor view bars, left tensor
inline constexpr Rgb kHistogramB{220, 150, 60};      // ... right tensor
inline constexpr Rgb kThreshold{250, 60, 200};       // the quantizer's +-g'/2 lines
inline constexpr Rgb kTernaryNeg{90, 120, 230};      // the -1/0/+1 bar
inline constexpr Rgb kTernaryZero{150, 150, 150};
inline constexpr Rgb kTernaryPos{230, 120, 80};
inline constexpr Rgb kOnset{240, 50, 50};            // timeline markers
inline constexpr Rgb kLastHealthy{60, 220, 90};
inline constexpr Rgb kFlipBar{240, 170, 40};         // compare view flip-rate bars
inline constexpr Rgb kRecipeStage{120, 200, 255};    // resurrection view: one square per recipe stage
// The induction heat map's ramp (magma-like: dark purple for 0, pale yellow for the top of the
// scale), and the frame around the top head of the figure shown.
inline constexpr Rgb kInductionRamp[5] = {{14, 10, 40}, {84, 24, 112}, {182, 54, 110}, {246, 124, 60}, {252, 236, 160}};
inline constexpr Rgb kInductionTop{60, 230, 230};

}  // namespace bitfsck::app::palette
