"""TakeVLA: a small vision-language-action planner (BEV raster + route instruction -> commentary + path + speed),
its labels, pre-takeover language supervision and Scenario Dreaming."""
