"""The page's layout and wiring (gradio Blocks); what each control does is in `handlers`.

Photo and references beside the mask editor, then the settings, Run / Cancel and the results.
Each browser tab has its own `Session` (gradio state). The heavy callbacks (auto mask, screening, Run) share one
queue slot, so a second tab waits its turn instead of halving the speed of both.
"""

from __future__ import annotations

from occjax.app import actions
from occjax.app.editor import MASK_RGBA, display_size
from occjax.app.handlers import KEEP, Handlers
from occjax.app.inputs import alignment_unavailable
from occjax.app.session import close_session, new_session

COMPUTE = {"concurrency_id": "compute", "concurrency_limit": 1}


def _shown(values):
    """Handler values -> gradio values (KEEP -> leave the component as it is)."""
    import gradio as gr

    if not isinstance(values, tuple):
        return gr.skip() if values is KEEP else values
    return tuple(gr.skip() if v is KEEP else v for v in values)


def _report(progress):
    """A gr.Progress as the handlers' report(fraction, text)."""
    return lambda fraction, text: progress(fraction, desc=text)


def _header(models) -> str:
    return (
        "# occjax: remove an occlusion from a face photo\n"
        f"Model **{models.name}** ({models.resolution} px). Upload a photo, mark what covers the "
        "face, add a few clean photos of the same person, and restore it by GAN inversion. "
        "Everything runs on this computer."
    )


def build_page(models):
    """The page for `models` (an occjax.Models), as gradio Blocks ready to launch."""
    import gradio as gr

    h = Handlers(models)
    names = actions.approaches(models)
    d = actions.default_settings(models)
    side = display_size(models.resolution)
    no_align = alignment_unavailable()
    red = "#{:02x}{:02x}{:02x}".format(*MASK_RGBA[:3])

    with gr.Blocks(
        title="occjax: restore a photo", analytics_enabled=False, delete_cache=(3600, 3600)
    ) as page:
        state = gr.State(new_session, delete_callback=close_session)
        gr.Markdown(_header(models), elem_classes="occ-title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                gr.Markdown("### 1. Photo", elem_classes="occ-step")
                photo = gr.File(
                    label="photo (any size)", type="filepath", height=120, elem_id="photo-upload"
                )
                align = gr.Checkbox(
                    label="align face",
                    value=False,
                    interactive=no_align is None,
                    info=no_align
                    or "FFHQ-style crop around the face, pasted back into the photo after. "
                    "Off: a photo that is not square is centre-cropped.",
                    elem_id="align",
                )
                photo_msg = gr.Markdown(elem_id="photo-msg")
                gr.Markdown("### 2. References", elem_classes="occ-step")
                refs = gr.File(
                    label="clean photos of the same person (for prior and personal)",
                    file_count="multiple",
                    type="filepath",
                    height=150,
                    elem_id="refs-upload",
                )
                gallery = gr.Gallery(
                    label="screened references",
                    columns=5,
                    height=130,
                    object_fit="contain",
                    buttons=["fullscreen"],
                    elem_id="refs-gallery",
                )
            with gr.Column(scale=3, min_width=360):
                gr.Markdown("### 3. Mask", elem_classes="occ-step")
                editor = gr.ImageEditor(
                    label="paint what covers the face",
                    type="numpy",
                    image_mode="RGBA",
                    sources=(),
                    transforms=(),
                    format="png",
                    brush=gr.Brush(colors=[(red, MASK_RGBA[3] / 255)], color_mode="fixed"),
                    eraser=gr.Eraser(),
                    layers=gr.LayerOptions(
                        allow_additional_layers=False, layers=["mask"], disabled=True
                    ),
                    canvas_size=(side, side),
                    height=side // 2 + 200,
                    elem_id="mask-editor",
                )
                with gr.Row():
                    auto = gr.Button("auto mask", elem_id="auto-mask")
                    mask_file = gr.UploadButton(
                        "upload a mask",
                        type="filepath",
                        elem_id="mask-upload",
                    )
                mask_msg = gr.Markdown(elem_id="mask-msg")
        verdicts = gr.Markdown(elem_id="refs-verdicts")
        gr.Markdown("### 4. Restore", elem_classes="occ-step")
        with gr.Row(equal_height=False):
            approach = gr.Dropdown(
                names,
                value=d.approach,
                label="approach",
                info="personal tunes the generator on the references: minutes on a CPU"
                if "personal" in names
                else None,
                elem_id="approach",
                scale=1,
            )
            steps = gr.Slider(1, 1000, value=d.steps, step=1, label="steps", elem_id="steps")
            adaptive = gr.Checkbox(
                value=d.adaptive,
                label="adaptive prior weight",
                info="the model's default: grows with the occluded area",
                elem_id="adaptive",
            )
            weight = gr.Slider(
                0.0,
                4.0,
                value=d.prior_weight,
                step=0.05,
                label="fidelity <-> prior (λ3, the prior's weight)",
                info="left: match the visible photo; right: stay near the references",
                elem_id="prior-weight",
            )
        with gr.Accordion("more settings", open=False, elem_id="more-settings"):
            with gr.Row():
                ref_steps = gr.Number(
                    d.reference_steps,
                    label="reference steps (inversion of each reference)",
                    precision=0,
                    minimum=1,
                    elem_id="ref-steps",
                )
                mask_steps = gr.Number(
                    actions.default_mask_steps(models),
                    label="auto mask steps",
                    precision=0,
                    minimum=1,
                    elem_id="mask-steps",
                )
        with gr.Row():
            run = gr.Button("Run", variant="primary", elem_id="run", scale=3)
            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel", scale=1)
        run_msg = gr.Markdown(elem_id="run-msg")
        gr.Markdown("### 5. Result", elem_classes="occ-step")
        with gr.Row(equal_height=False):
            compare = gr.ImageSlider(
                label="before / after",
                format="png",
                buttons=["download", "fullscreen"],
                elem_id="before-after",
                scale=2,
            )
            with gr.Column(scale=3):
                with gr.Row(equal_height=False):
                    used = gr.Image(
                        label="mask used",
                        format="png",
                        buttons=["download", "fullscreen"],
                        elem_id="mask-used",
                        scale=2,
                    )
                    curve = gr.Image(
                        label="loss",
                        format="png",
                        buttons=["download", "fullscreen"],
                        elem_id="loss-curve",
                        scale=3,
                    )
                files = gr.File(
                    label="downloads", file_count="multiple", height=300, elem_id="downloads"
                )

        # ---- wiring ----
        track = gr.Progress()  # gradio passes each call its own tracker in its place

        def on_photo(s, path, al):
            return _shown(h.photo(s, path, al))

        def on_mask_file(s, path):
            return _shown(h.mask_file(s, path))

        def on_auto(s, n, progress=track):
            return _shown(h.auto_mask(s, n, _report(progress)))

        def on_refs(s, paths, al, n, progress=track):
            return _shown(h.references(s, paths, al, n, _report(progress)))

        def on_run(s, ed, a, n, ad, w, rn, paths, al, progress=track):
            return _shown(h.run(s, ed, (a, n, ad, w, rn), paths, al, _report(progress)))

        def on_approach(a):
            cfg = actions.model_config(models, a)
            prior = actions.uses_prior_weight(cfg)
            return (
                gr.update(value=cfg.steps if cfg.steps else 1, interactive=cfg.steps > 0),
                gr.update(interactive=prior),
                gr.update(interactive=prior),
            )

        photo_out = [editor, photo_msg, mask_msg]
        photo.change(on_photo, [state, photo, align], photo_out)
        mask_file.upload(on_mask_file, [state, mask_file], [editor, mask_msg])
        auto.click(
            on_auto, [state, mask_steps], [editor, mask_msg], show_progress_on=[editor], **COMPUTE
        )
        refs_args = dict(
            fn=on_refs, inputs=[state, refs, align, ref_steps], show_progress_on=[gallery]
        )
        refs.change(outputs=[gallery, verdicts], **refs_args, **COMPUTE)
        align.change(on_photo, [state, photo, align], photo_out).then(
            outputs=[gallery, verdicts], **refs_args, **COMPUTE
        )
        approach.change(on_approach, [approach], [steps, adaptive, weight])
        weight.input(lambda: False, None, [adaptive])
        run.click(
            on_run,
            [state, editor, approach, steps, adaptive, weight, ref_steps, refs, align],
            [run_msg, compare, used, curve, files, gallery, verdicts],
            show_progress_on=[compare],
            **COMPUTE,
        )
        cancel.click(h.cancel, [state], [run_msg], queue=False)
    return page
