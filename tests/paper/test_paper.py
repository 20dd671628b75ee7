import pytest

from kpbench.paper.render import Latex, integer, latex_escape, make_environment, num, percent, usd


def test_command_lines_keep_their_double_hyphens_and_backquotes():
    assert latex_escape("`aws ec2 --region x`") == r"\textasciigrave{}aws ec2 -{}-region x\textasciigrave{}"
    assert latex_escape("--") == "--"  # an empty cell's dash


def test_every_latex_special_character_is_escaped():
    text = r"a&b%c$d#e_f{g}h~i^j\k<l>m"
    assert latex_escape(text) == (r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i\textasciicircum{}j"
                                  r"\textbackslash{}k\textless{}l\textgreater{}m")


def test_templates_escape_data_but_not_marked_latex(tmp_path):
    (tmp_path / "t.tex.j2").write_text(
        r"\VAR{note} | \VAR{value|num(1)} | \VAR{missing} | \VAR{raw|latex}" "\n"
        "%% for row in rows\n"
        r"\VAR{row} \\" "\n"
        "%% endfor\n")
    env = make_environment(tmp_path)
    out = env.get_template("t.tex.j2").render(note="50% of g4dn_x & co", value=1234.56, missing=None,
                                              raw=r"\textbf{x}", rows=["a_b", "c#d"])
    assert out.splitlines() == [r"50\% of g4dn\_x \& co | \num{1234.6} | -- | \textbf{x}",
                                r"a\_b \\", r"c\#d \\"]


def test_number_filters():
    assert num(None) == "--" and num(float("nan")) == "--"
    assert integer(7266494.0) == r"\num{7266494}"
    assert usd(1234.5) == r"\$1,234.50"
    assert percent(0.2915) == r"\SI{29.1}{\percent}"
    assert isinstance(num(1.0), Latex)


def test_undefined_template_variables_fail_loudly(tmp_path):
    import jinja2

    (tmp_path / "t.tex.j2").write_text(r"\VAR{nothing}")
    with pytest.raises(jinja2.UndefinedError):
        make_environment(tmp_path).get_template("t.tex.j2").render()


def test_point_labels_never_overlap_even_where_points_crowd():
    """Eight points within a few pixels of each other (catalogue GPUs at one end-to-end time): every
    label is drawn clear of the others, and each moved one keeps a line back to its point."""
    from matplotlib.text import Text

    from kpbench.paper.plotting import label_points, plain_log_ticks, plt

    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    points = [(140 + i, 0.03 + 0.001 * i, f"g{i}.2xlarge") for i in range(8)] + [(600, 0.015, "c7a.large")]
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    ax.set(xscale="log", yscale="log", ylim=(1e-3, 10))  # the points a few pixels apart
    plain_log_ticks(ax.xaxis)
    label_points(ax, points)
    fig.canvas.draw()  # places the annotations' texts
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(text, renderer) for text in ax.texts]  # the text alone, not its line
    assert len(boxes) == len(points)
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    centres = [ax.transData.transform((x, y)) for x, y, _ in points]  # and no label hides a point
    assert not [(text.get_text(), i) for text, box in zip(ax.texts, boxes)
                for i, (cx, cy) in enumerate(centres) if box.contains(cx, cy)]
    moved = [t for t in ax.texts if t.xyann[1] != 0]
    assert moved and all(t.arrow_patch is not None for t in moved)
    assert [label.get_text() for label in ax.xaxis.get_minorticklabels() if label.get_text()] == []
    plt.close(fig)
