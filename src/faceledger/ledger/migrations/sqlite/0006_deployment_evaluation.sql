-- faceledger schema, version 6: the evaluation a deployment relies on (see faceledger/gallery/bias.py).
--
-- JSON: the SHA-256 of the `faceledger evaluate` report, whom its data represents (the operator's statement), the
-- recognizer and threshold it was made at, each group's FMR and FNMR with their ratios to the best group. NULL for
-- a deployment recorded without one (refused when the policy sets identification.max_group_ratio).

ALTER TABLE deployments ADD COLUMN evaluation TEXT;
