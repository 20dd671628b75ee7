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
