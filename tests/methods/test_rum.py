"""RUM: the proxy's groups partition the forget set in proxy order; each group meets its own method."""

import copy

import pytest
import torch

import methods
from methods.rum import partition_by_proxy
from tests.methods.toy import fitted_tiny_cnn, random_loaders


def test_partition_by_proxy_is_an_ordered_partition():
    mem = torch.tensor([0.3, -1.0, 2.0, 0.1, 0.7, 5.0, -0.2, 0.0, 1.5, 0.2, 0.4])
    groups = partition_by_proxy(mem)
    assert [len(g) for g in groups] == [3, 4, 4]
    assert torch.equal(torch.cat(groups).sort().values, torch.arange(len(mem)))
    for lower, upper in zip(groups, groups[1:]):
        assert mem[lower].max() <= mem[upper].min()
    assert torch.equal(groups[2], torch.tensor([2, 5, 8, 4]).sort().values)


@pytest.mark.parametrize("proxy", ["confidence", "ho_ret"])
def test_run_groups_follow_the_proxy(proxy):
    loaders = random_loaders((96, 30, 32), data_seed=5)
    net = fitted_tiny_cnn(loaders[0])
    method = methods.get_method("RUM")(seed=3, proxy=proxy, mid_method="ng", mid_set="epochs=1")
    before = copy.deepcopy(net)
    method.run(net, *loaders)
    groups = method.groups_
    assert torch.equal(torch.cat(groups).sort().values, torch.arange(30))
    entries = method.log_["groups"]
    assert [e["method"] for e in entries] == ["none", "ng", "salun"]
    assert [e["size"] for e in entries] == [10, 10, 10]
    ranges = [e["proxy_range"] for e in entries]
    assert ranges[0][1] <= ranges[1][0] and ranges[1][1] <= ranges[2][0]
    if proxy == "confidence":  # low memorization = high confidence on the entry model
        from methods._entry import loader_statistics
        from methods._losses import true_label_confidence

        ds_loader = torch.utils.data.DataLoader(loaders[1].dataset, batch_size=64)
        conf = loader_statistics(before, ds_loader, true_label_confidence)[0]
        assert conf[groups[0]].min() >= conf[groups[2]].max() - 1e-4
    assert not net.training


def test_bad_group_settings_are_refused():
    cls = methods.get_method("rum")
    with pytest.raises(ValueError, match="unknown method"):
        cls(mid_method="nope")
    with pytest.raises(ValueError, match="high_set"):
        cls(high_set="not_a_param=1")
    with pytest.raises(ValueError, match="rum itself"):
        cls(low_method="RUM")
    with pytest.raises(ValueError, match="proxy"):
        cls(proxy="loss")
