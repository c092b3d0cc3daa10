"""Line comments follow their line's text onto later turns' diffs, or show as outdated."""

import pytest

from appliance.sessions.anchors import CURRENT, MOVED, OUTDATED, Anchor, line_text_at, place, reanchor, side_lines

TURN1 = "@@ -1,3 +1,3 @@\n import os\n-x = 1\n+x = 2\n print(x)\n"
# turn 2 added two lines at the top: `x = 2` moved from line 2 to line 4; `print(x)` was changed
TURN2 = "@@ -1,3 +1,5 @@\n+import sys\n+\n import os\n-x = 1\n+x = 2\n-print(x)\n+log(x)\n"


def test_side_lines_number_each_side_like_the_diff():
    assert side_lines(TURN1, "new") == {1: "import os", 2: "x = 2", 3: "print(x)"}
    assert side_lines(TURN1, "old") == {1: "import os", 2: "x = 1", 3: "print(x)"}
    assert line_text_at(TURN1, 2, "new") == "x = 2" and line_text_at(TURN1, 9, "new") is None


def test_the_same_line_still_reading_the_same_stays():
    assert reanchor(TURN1, 2, "new", "x = 2") == Anchor(2, CURRENT)


def test_a_shifted_line_is_found_by_its_text():
    assert reanchor(TURN2, 2, "new", "x = 2") == Anchor(4, MOVED)


def test_a_changed_or_vanished_line_is_outdated():
    assert reanchor(TURN2, 3, "new", "print(x)") == Anchor(None, OUTDATED)
    assert reanchor(None, 2, "new", "x = 2").outdated  # the file left the diff


def test_the_nearest_of_several_matches_wins_and_ties_go_up():
    patch = "@@ -1,0 +1,7 @@\n+pass\n+a\n+b\n+c\n+d\n+pass\n+pass\n"
    assert reanchor(patch, 5, "new", "pass").line == 6
    assert reanchor(patch, 3, "new", "pass").line == 1  # 1 and 6 are 2 and 3 away
    assert reanchor(patch, 8, "new", "pass").line == 7


def test_trailing_whitespace_does_not_make_a_line_different():
    assert reanchor("@@ -0,0 +1,2 @@\n+y\n+x = 2  \n", 1, "new", "x = 2").line == 2


def test_a_blank_line_is_not_followed_elsewhere():
    assert reanchor(TURN2, 1, "new", "") == Anchor(None, OUTDATED)
    assert reanchor(TURN2, 2, "new", "") == Anchor(2, CURRENT)


def test_old_side_comments_follow_the_old_numbering():
    patch = "@@ -3,2 +3,1 @@\n keep\n-x = 1\n"
    assert reanchor(patch, 2, "old", "x = 1") == Anchor(4, MOVED)


@pytest.mark.parametrize("comment_turn,shown,patch,want", [
    (1, 1, TURN1, Anchor(2, CURRENT)),       # on the diff it was written on
    (1, 2, TURN2, Anchor(4, MOVED)),         # a newer diff: follows its text
    (1, 2, None, Anchor(None, OUTDATED)),    # a newer diff without the file
    (2, 1, TURN1, None),                     # an older diff: not shown
    (None, 5, TURN2, Anchor(2, CURRENT)),    # from before comments kept their text: its line number
])
def test_place(comment_turn, shown, patch, want):
    assert place(comment_turn, "x = 2", 2, "new", shown, patch) == want
