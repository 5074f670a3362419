"""bench.kernel_groups: kernel names as the CUDA profiler reports them, sorted into groups."""

from __future__ import annotations

import pytest

from bench.kernel_groups import GROUPS, format_groups, group_times, kernel_group


@pytest.mark.parametrize(
    ("name", "group"),
    [
        (
            "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1",
            "matmul",
        ),
        ("nvjet_tst_128x64_64x8_2x1_v_bz_coopA_NNT", "matmul"),
        (
            "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x2>",
            "matmul",
        ),
        (
            "cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x64x32",
            "attention",
        ),
        (
            "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<32, 128, 128>>",
            "attention",
        ),
        ("fmha_cutlassB_bf16_aligned_64x64_k32_sm80", "attention"),
        (
            "void cudnn::fusion::compute_dot_do_o<true>(void const*, void const*, float*)",
            "attention",
        ),
        ("void cudnn::fusion::convert_dq_to_16bits<true>(void const*, void*)", "attention"),
        ("_linear_softmax_grad_kernel", "head+CE"),
        ("_softmax_grad_rows_kernel", "head+CE"),
        ("triton_red_fused__log_softmax_nll_loss_forward_3", "head+CE"),
        (
            "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>",
            "optimizer",
        ),
        ("Memcpy DtoD (Device -> Device)", "copy"),
        ("triton_per_fused_native_layer_norm_0", "norm+elementwise"),
        ("triton_poi_fused_add_gelu_1", "norm+elementwise"),
        (
            "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>",
            "norm+elementwise",
        ),
    ],
)
def test_kernel_group(name: str, group: str) -> None:
    assert kernel_group(name) == group


def test_group_times_sum_and_format() -> None:
    totals = group_times([("nvjet_a", 3e-3), ("nvjet_b", 1e-3), ("triton_poi_x", 4e-3)])
    assert list(totals) == list(GROUPS)
    assert totals["matmul"] == pytest.approx(4e-3) and totals["attention"] == 0.0
    text = format_groups(totals, steps=2)
    assert "matmul" in text and "2.000" in text and "50.0%" in text
    assert text.splitlines()[-1].split()[-1] == "4.000"  # 8 ms over 2 steps
